"""OCR accuracy against ground truth: character accuracy = 1 - CER.

Text is compared after NFKC normalisation with whitespace removed (OCR engines disagree on spaces
between CJK characters and around punctuation, which is not what we measure).

Each ground-truth line is compared with the predicted regions that overlap it. A detector often
merges neighbouring lines into one region, so the truth is aligned against the best-matching
substring of the overlapping text (rapidfuzz alignment) instead of the whole of it; a truth line with
no overlapping prediction counts every character as an error.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Sequence
from typing import Any

from rapidfuzz import fuzz
from rapidfuzz.distance import Levenshtein

from qwen_dataset.geometry import overlap_fraction
from qwen_dataset.payloads import iter_boxes
from qwen_dataset.records import load_payload


def normalize_text(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


@dataclasses.dataclass(frozen=True)
class OcrScore:
    characters: int  # reference characters
    errors: int  # edit operations needed
    lines: int
    missed_lines: int  # truth lines with no overlapping prediction

    @property
    def accuracy(self) -> float:
        return 1.0 - self.errors / self.characters if self.characters else 1.0

    def __add__(self, other: OcrScore) -> OcrScore:
        return OcrScore(
            self.characters + other.characters,
            self.errors + other.errors,
            self.lines + other.lines,
            self.missed_lines + other.missed_lines,
        )


def _line_errors(truth: str, candidate: str) -> int:
    if not candidate:
        return len(truth)
    alignment = fuzz.partial_ratio_alignment(truth, candidate)
    if alignment is None:
        return len(truth)
    aligned = candidate[alignment.dest_start : alignment.dest_end]
    return min(len(truth), Levenshtein.distance(truth, aligned))


def score_regions(
    truth_lines: Sequence[dict[str, Any]], regions: Sequence[dict[str, Any]], min_overlap: float = 0.3
) -> OcrScore:
    """Score predicted ``regions`` ({bbox, text}) against ``truth_lines`` ({bbox, text}) of one frame."""
    characters = errors = missed = 0
    ordered = sorted(regions, key=lambda r: r.get("reading_order", 0))
    for line in truth_lines:
        truth = normalize_text(line["text"])
        overlapping = [
            normalize_text(r["text"])
            for r in ordered
            if overlap_fraction(line["bbox"], r["bbox"]) >= min_overlap
            or overlap_fraction(r["bbox"], line["bbox"]) >= min_overlap
        ]
        if not overlapping:
            missed += 1
        characters += len(truth)
        errors += _line_errors(truth, "".join(overlapping))
    return OcrScore(characters, errors, len(truth_lines), missed)


def _regions_by_frame(annotations: Any) -> dict[str, list[dict[str, Any]]]:
    ok = annotations[(annotations["status"] == "ok") & (annotations["task"] == "ocr")]
    return {
        row.frame_id: [box.item for box in iter_boxes("ocr", load_payload(row.payload))]
        for row in ok.itertuples(index=False)
    }


def score_against_sample_truth(truth: Any, uploads: Any, frames: Any, annotations: Any) -> dict[str, OcrScore]:
    """OCR score per image file and PDF page of a generated sample batch (see ``sample_data``).

    ``uploads``, ``frames`` and ``annotations`` are the pipeline's manifests; PDF truth in points is
    scaled to the rendered page's pixels.
    """
    upload_ids = dict(zip(uploads["original_name"], uploads["upload_id"]))
    regions = _regions_by_frame(annotations)
    frames_by_key = {(row.upload_id, int(row.index)): row for row in frames.itertuples(index=False)}
    scores: dict[str, OcrScore] = {}
    for image in truth.images:
        frame = frames_by_key.get((upload_ids.get(image.file_name), 0))
        if frame is not None:
            lines = [{"bbox": line.bbox, "text": line.text} for line in image.lines]
            scores[image.file_name] = score_regions(lines, regions.get(frame.frame_id, []))
    for pdf in truth.pdfs:
        for page in pdf.pages:
            frame = frames_by_key.get((upload_ids.get(pdf.file_name), page.page - 1))
            if frame is None:
                continue
            scale = frame.width / page.width_pt
            lines = [{"bbox": [v * scale for v in line.bbox], "text": line.text} for line in page.lines]
            scores[f"{pdf.file_name}#page{page.page}"] = score_regions(lines, regions.get(frame.frame_id, []))
    return scores
