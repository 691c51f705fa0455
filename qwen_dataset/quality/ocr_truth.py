"""OCR accuracy against ground truth: character accuracy = 1 - CER, line recall, spurious regions.

Text is compared as a trainer will see it: after :func:`qwen_dataset.text.normalize_text` (NFKC,
whitespace runs as one space, ends trimmed), so a lost space between ``欢迎回来`` and ``Welcome``
is an error. The whitespace-free figure (:func:`qwen_dataset.text.strip_whitespace`) is computed
beside it and labelled ``*_without_spaces``; it tells spacing errors from misread characters.

Each ground-truth line is compared with the predicted regions that overlap it (at least
``min_overlap`` of either box), joined with a space in reading order (two regions are two visually
separate pieces of text). A detector often merges neighbouring lines into one region, so the truth
is aligned against the best-matching substring of that text (rapidfuzz alignment) instead of the
whole of it; a truth line with no overlapping prediction counts every character as an error and is
a missed line.

* **line recall** = truth lines with an overlapping prediction / truth lines;
* **spurious regions** = predicted regions that overlap no truth line (a window-control dot read
  as ``●``, noise read as text): each is something a reviewer has to delete.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from rapidfuzz import fuzz
from rapidfuzz.distance import Levenshtein

from qwen_dataset.geometry import overlap_fraction
from qwen_dataset.payloads import iter_boxes
from qwen_dataset.records import load_payload
from qwen_dataset.text import guess_language, normalize_text, strip_whitespace

__all__ = [
    "LineScore",
    "OcrScore",
    "normalize_text",
    "score_frame",
    "score_regions",
    "strip_whitespace",
    "summarize",
]


@dataclasses.dataclass(frozen=True)
class LineScore:
    """How one truth line was read."""

    text: str  # the truth, normalised (spaces kept)
    language: str  # guess_language of the truth
    found: bool  # some predicted region overlaps it
    characters: int
    errors: int
    characters_without_spaces: int
    errors_without_spaces: int


@dataclasses.dataclass(frozen=True)
class OcrScore:
    characters: int  # reference characters, spaces counted
    errors: int  # edit operations needed, spaces counted
    lines: int
    missed_lines: int  # truth lines with no overlapping prediction
    characters_without_spaces: int = 0
    errors_without_spaces: int = 0
    regions: int = 0  # predicted regions
    spurious_regions: int = 0  # predicted regions overlapping no truth line

    @property
    def accuracy(self) -> float:
        """1 - CER with spaces: the headline."""
        return 1.0 - self.errors / self.characters if self.characters else 1.0

    @property
    def cer(self) -> float:
        return 1.0 - self.accuracy

    @property
    def accuracy_without_spaces(self) -> float:
        if not self.characters_without_spaces:
            return 1.0
        return 1.0 - self.errors_without_spaces / self.characters_without_spaces

    @property
    def cer_without_spaces(self) -> float:
        return 1.0 - self.accuracy_without_spaces

    @property
    def line_recall(self) -> float:
        return (self.lines - self.missed_lines) / self.lines if self.lines else 1.0

    def __add__(self, other: OcrScore) -> OcrScore:
        return OcrScore(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))


def _overlaps(line_box: Sequence[float], region_box: Sequence[float], min_overlap: float) -> bool:
    return (
        overlap_fraction(line_box, region_box) >= min_overlap or overlap_fraction(region_box, line_box) >= min_overlap
    )


def _line_errors(truth: str, candidate: str) -> int:
    """Edits from the best-aligned stretch of ``candidate`` to ``truth`` (at most len(truth))."""
    if not candidate:
        return len(truth)
    alignment = fuzz.partial_ratio_alignment(truth, candidate)
    if alignment is None:
        return len(truth)
    aligned = candidate[alignment.dest_start : alignment.dest_end]
    return min(len(truth), Levenshtein.distance(truth, aligned))


def _score_line(truth_text: str, overlapping: Sequence[str]) -> LineScore:
    truth = normalize_text(truth_text)
    bare_truth = strip_whitespace(truth_text)
    candidate = normalize_text(" ".join(overlapping))
    return LineScore(
        text=truth,
        language=guess_language(truth),
        found=bool(overlapping),
        characters=len(truth),
        errors=_line_errors(truth, candidate),
        characters_without_spaces=len(bare_truth),
        errors_without_spaces=_line_errors(bare_truth, candidate.replace(" ", "")),
    )


@dataclasses.dataclass(frozen=True)
class FrameScore:
    """Every truth line of one frame, scored, and the predicted regions that matched nothing."""

    lines: list[LineScore]
    regions: int
    spurious_regions: int


def score_frame(
    truth_lines: Sequence[dict[str, Any]], regions: Sequence[dict[str, Any]], min_overlap: float = 0.3
) -> FrameScore:
    """Score predicted ``regions`` ({bbox, text}) against ``truth_lines`` ({bbox, text}) of one frame."""
    ordered = sorted(regions, key=lambda r: r.get("reading_order", 0))
    used = [False] * len(ordered)
    scores = []
    for line in truth_lines:
        overlapping = []
        for index, region in enumerate(ordered):
            if _overlaps(line["bbox"], region["bbox"], min_overlap):
                overlapping.append(str(region["text"]))
                used[index] = True
        scores.append(_score_line(line["text"], overlapping))
    return FrameScore(scores, len(ordered), used.count(False))


def summarize(lines: Iterable[LineScore], regions: int = 0, spurious_regions: int = 0) -> OcrScore:
    """Add line scores up (pass a language's lines alone for its figure)."""
    lines = list(lines)
    return OcrScore(
        characters=sum(line.characters for line in lines),
        errors=sum(line.errors for line in lines),
        lines=len(lines),
        missed_lines=sum(not line.found for line in lines),
        characters_without_spaces=sum(line.characters_without_spaces for line in lines),
        errors_without_spaces=sum(line.errors_without_spaces for line in lines),
        regions=regions,
        spurious_regions=spurious_regions,
    )


def score_regions(
    truth_lines: Sequence[dict[str, Any]], regions: Sequence[dict[str, Any]], min_overlap: float = 0.3
) -> OcrScore:
    """The summed score of one frame (see :func:`score_frame`)."""
    frame = score_frame(truth_lines, regions, min_overlap)
    return summarize(frame.lines, frame.regions, frame.spurious_regions)


def _regions_by_frame(annotations: Any) -> dict[str, list[dict[str, Any]]]:
    ok = annotations[(annotations["status"] == "ok") & (annotations["task"] == "ocr")]
    return {
        row.frame_id: [box.item for box in iter_boxes("ocr", load_payload(row.payload))]
        for row in ok.itertuples(index=False)
    }


def sample_truth_frames(truth: Any, uploads: Any, frames: Any) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """``{name: (frame_id, truth lines in frame pixels)}`` for every image file and PDF page of a
    generated sample batch (see ``qwen_dataset.samples``); PDF truth in points is scaled to the
    rendered page's pixels."""
    upload_ids = dict(zip(uploads["original_name"], uploads["upload_id"]))
    frames_by_key = {(row.upload_id, int(row.index)): row for row in frames.itertuples(index=False)}
    found: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for image in truth.images:
        frame = frames_by_key.get((upload_ids.get(image.file_name), 0))
        if frame is not None:
            found[image.file_name] = (frame.frame_id, [{"bbox": line.bbox, "text": line.text} for line in image.lines])
    for pdf in truth.pdfs:
        for page in pdf.pages:
            frame = frames_by_key.get((upload_ids.get(pdf.file_name), page.page - 1))
            if frame is None:
                continue
            scale = frame.width / page.width_pt
            lines = [{"bbox": [v * scale for v in line.bbox], "text": line.text} for line in page.lines]
            found[f"{pdf.file_name}#page{page.page}"] = (frame.frame_id, lines)
    return found


def score_frames_against_sample_truth(truth: Any, uploads: Any, frames: Any, annotations: Any) -> dict[str, FrameScore]:
    """Line-level scores per image file and PDF page of a generated sample batch."""
    regions = _regions_by_frame(annotations)
    return {
        name: score_frame(lines, regions.get(frame_id, []))
        for name, (frame_id, lines) in sample_truth_frames(truth, uploads, frames).items()
    }


def score_against_sample_truth(truth: Any, uploads: Any, frames: Any, annotations: Any) -> dict[str, OcrScore]:
    """OCR score per image file and PDF page of a generated sample batch.

    ``uploads``, ``frames`` and ``annotations`` are the pipeline's manifests.
    """
    return {
        name: summarize(frame.lines, frame.regions, frame.spurious_regions)
        for name, frame in score_frames_against_sample_truth(truth, uploads, frames, annotations).items()
    }
