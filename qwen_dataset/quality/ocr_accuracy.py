"""OCR accuracy = 1 - CER (character error rate), between two annotators or AI vs final.

Definition (target: accuracy > 95 %):

* **Normalisation (headline).** CER counts the text as exported, spaces included: both texts go
  through :func:`qwen_dataset.text.normalize_text` (Unicode NFKC, so full-width ``ＡＢＣ１２``
  becomes ``ABC12``; every run of whitespace becomes one space; ends trimmed). A missing space
  (``Welcomeback`` for ``Welcome back``) is one error, as it is one wrong token for a model trained
  on the label.
* **Without spaces (informative).** The same CER after removing all whitespace
  (:func:`qwen_dataset.text.strip_whitespace`) is reported beside it as ``*_without_spaces``, so
  spacing errors can be told apart from misread characters. It is never the gated figure: a
  perfect figure over text with glued words would hide a defect.
* **CER** = total Levenshtein edit distance / total reference characters, summed over all text
  pairs (long lines weigh more than short ones), computed with rapidfuzz.
  **accuracy** = 1 - CER, floored at 0 (insertions can push CER above 1). When there are no
  reference characters at all, CER is 0 if the hypothesis is empty too, else 1.
* **Regions.** The regions of a frame are matched by box first, with the matcher of
  :mod:`qwen_dataset.quality.agreement` (Hungarian on 1 - IoU, pairs need IoU >= ``min_iou``,
  default 0.1; OCR regions carry no label), then each matched pair's texts are compared. A
  reference region left unmatched counts all its characters as errors (deletions); a hypothesis
  region left unmatched adds its characters as errors (insertions) but no reference characters.
* **Who is the reference.** Annotator vs annotator: the first annotator (A, as in the IoU
  agreement); AI vs final: the final reviewed (human or arbitrated) annotation, the AI
  pre-annotation being the hypothesis.
* **Per language.** Each text pair is filed under ``zh`` / ``en`` / ``mixed`` / ``other`` by
  :func:`qwen_dataset.text.guess_language` of its reference text (of the hypothesis text for an
  unmatched hypothesis region), not by the ``language`` field, which the VLM fills with ISO codes
  and annotators may leave stale.

Speed: edit distances of many pairs run in one C-level ``map`` of rapidfuzz's
``Levenshtein.distance`` by default (``workers=1``); ``workers=-1`` (or > 1) switches to
``rapidfuzz.process.cpdist`` on that many threads. For short OCR lines the single-threaded map is
the faster one: cpdist prepares a cached scorer per pair, which costs more than a ~20-character
distance (``benchmarks/bench_quality.py``, 1,000,000 pairs on 2 cores: map 0.2-0.3 s, cpdist
0.3-0.45 s whatever the worker count). cpdist only pays off for long texts on many free cores.

>>> round(character_error_rate("营业收入 12%", "营业收人 12%"), 3)  # 1 error in 8 characters (the space counts)
0.125
>>> character_error_rate("ＯＫ", "OK")
0.0
>>> round(character_error_rate("Welcome back", "Welcomeback"), 3)  # the lost space counts
0.083
>>> character_error_rate("Welcome back", "Welcomeback", spaces=False)
0.0
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, TypedDict

import numpy as np
import pandas as pd
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from qwen_dataset.db.corrections import apply_corrections
from qwen_dataset.payloads import iter_boxes
from qwen_dataset.quality.agreement import DEFAULT_MIN_IOU, FrameBoxes, match_frames, pair_annotations
from qwen_dataset.records import AnnotationStatus, Source, Task, load_payload
from qwen_dataset.text import LANGUAGES, guess_language, normalize_text, strip_whitespace

TARGET_ACCURACY = 0.95


@dataclasses.dataclass(frozen=True)
class CerScore:
    """Edit operations over reference characters for a set of text pairs."""

    pairs: int
    characters: int  # reference characters after normalisation
    errors: int  # edit operations (substitutions, deletions, insertions)

    @property
    def cer(self) -> float:
        if self.characters:
            return self.errors / self.characters
        return 0.0 if self.errors == 0 else 1.0

    @property
    def accuracy(self) -> float:
        return max(0.0, 1.0 - self.cer)

    def __add__(self, other: CerScore) -> CerScore:
        return CerScore(self.pairs + other.pairs, self.characters + other.characters, self.errors + other.errors)


@dataclasses.dataclass(frozen=True)
class OcrAccuracyReport:
    """Overall and per-language CER; region counts when the pairs came from matched regions.

    ``overall`` and ``by_language`` count spaces (the headline); the ``*_without_spaces`` pair is
    the same measurement with whitespace removed.
    """

    overall: CerScore
    by_language: dict[str, CerScore]
    overall_without_spaces: CerScore = CerScore(0, 0, 0)
    by_language_without_spaces: dict[str, CerScore] = dataclasses.field(default_factory=dict)
    matched_regions: int = 0
    unmatched_reference: int = 0
    unmatched_hypothesis: int = 0

    @property
    def accuracy(self) -> float:
        return self.overall.accuracy

    @property
    def cer(self) -> float:
        return self.overall.cer

    @property
    def accuracy_without_spaces(self) -> float:
        return self.overall_without_spaces.accuracy

    def passes(self, target: float = TARGET_ACCURACY) -> bool:
        return self.accuracy > target

    def to_metadata(self) -> dict[str, Any]:
        """Plain numbers for asset metadata or JSON."""
        figures: dict[str, Any] = {
            "pairs": self.overall.pairs,
            "characters": self.overall.characters,
            "errors": self.overall.errors,
            "cer": self.cer,
            "accuracy": self.accuracy,
            "characters_without_spaces": self.overall_without_spaces.characters,
            "errors_without_spaces": self.overall_without_spaces.errors,
            "cer_without_spaces": self.overall_without_spaces.cer,
            "accuracy_without_spaces": self.accuracy_without_spaces,
            "matched_regions": self.matched_regions,
            "unmatched_reference": self.unmatched_reference,
            "unmatched_hypothesis": self.unmatched_hypothesis,
        }
        for language, score in self.by_language.items():
            figures[f"accuracy_{language}"] = score.accuracy
            figures[f"characters_{language}"] = score.characters
        for language, score in self.by_language_without_spaces.items():
            figures[f"accuracy_{language}_without_spaces"] = score.accuracy
        return figures


# --------------------------------------------------------------------------------------------
# Text pairs


def _normalizer(spaces: bool):
    return normalize_text if spaces else strip_whitespace


def character_error_rate(reference: str, hypothesis: str, spaces: bool = True) -> float:
    """CER of one pair after normalisation (see the module docstring for the empty reference).

    ``spaces=False`` gives the whitespace-free figure.
    """
    normalize = _normalizer(spaces)
    ref, hyp = normalize(reference), normalize(hypothesis)
    return CerScore(1, len(ref), Levenshtein.distance(ref, hyp)).cer


def edit_distances(
    references: Sequence[str],
    hypotheses: Sequence[str],
    workers: int = 1,
    normalized: bool = False,
    spaces: bool = True,
) -> np.ndarray:
    """Levenshtein distance of each (reference, hypothesis) pair as an int64 array.

    ``workers=1``: one C-level map over the pairs; otherwise rapidfuzz ``process.cpdist`` with that
    many threads (-1: all cores); see the module docstring for which is faster.
    ``normalized=True`` says the texts are already normalised; else they go through
    ``normalize_text`` (``spaces=True``) or ``strip_whitespace`` (``spaces=False``).
    """
    if len(references) != len(hypotheses):
        raise ValueError(
            f"{len(references)} reference texts but {len(hypotheses)} hypothesis texts; pass them pair by pair"
        )
    if not normalized:
        normalize = _normalizer(spaces)
        references = [normalize(text) for text in references]
        hypotheses = [normalize(text) for text in hypotheses]
    if not len(references):
        return np.zeros(0, dtype=np.int64)
    if workers == 1:
        return np.fromiter(map(Levenshtein.distance, references, hypotheses), dtype=np.int64, count=len(references))
    return process.cpdist(references, hypotheses, scorer=Levenshtein.distance, workers=workers).astype(np.int64)


def corpus_cer(references: Sequence[str], hypotheses: Sequence[str], workers: int = 1, spaces: bool = True) -> CerScore:
    """CER over many text pairs: total edit distance / total reference characters."""
    normalize = _normalizer(spaces)
    refs = [normalize(text) for text in references]
    hyps = [normalize(text) for text in hypotheses]
    distances = edit_distances(refs, hyps, workers=workers, normalized=True)
    return CerScore(len(refs), sum(map(len, refs)), int(distances.sum()))


def _language_of(reference: str, hypothesis: str) -> str:
    return guess_language(reference if reference else hypothesis)


def _scores_by_language(
    refs: Sequence[str], distances: np.ndarray, languages: Sequence[str]
) -> tuple[CerScore, dict[str, CerScore]]:
    lengths = np.fromiter(map(len, refs), dtype=np.int64, count=len(refs))
    language_array = np.asarray(languages, dtype=object)
    by_language = {}
    for language in [*LANGUAGES, *sorted(set(languages) - set(LANGUAGES))]:
        mask = language_array == language
        if mask.any():
            by_language[language] = CerScore(int(mask.sum()), int(lengths[mask].sum()), int(distances[mask].sum()))
    return CerScore(len(refs), int(lengths.sum()), int(distances.sum())), by_language


def text_accuracy(
    references: Sequence[str],
    hypotheses: Sequence[str],
    languages: Sequence[str] | None = None,
    workers: int = 1,
) -> OcrAccuracyReport:
    """CER overall and per language for text pairs, with and without spaces.

    ``languages`` default: guessed per pair.
    """
    refs = [normalize_text(text) for text in references]
    hyps = [normalize_text(text) for text in hypotheses]
    if languages is None:
        languages = [_language_of(ref, hyp) for ref, hyp in zip(refs, hyps)]
    elif len(languages) != len(refs):
        raise ValueError(f"{len(refs)} text pairs but {len(languages)} languages; give one language per pair")
    distances = edit_distances(refs, hyps, workers=workers, normalized=True)
    overall, by_language = _scores_by_language(refs, distances, languages)
    # Removing the single spaces left by normalize_text is the whole whitespace-free normalisation.
    bare_refs = [text.replace(" ", "") for text in refs]
    bare_hyps = [text.replace(" ", "") for text in hyps]
    bare_distances = edit_distances(bare_refs, bare_hyps, workers=workers, normalized=True)
    bare_overall, bare_by_language = _scores_by_language(bare_refs, bare_distances, languages)
    return OcrAccuracyReport(
        overall=overall,
        by_language=by_language,
        overall_without_spaces=bare_overall,
        by_language_without_spaces=bare_by_language,
    )


# --------------------------------------------------------------------------------------------
# Regions


def _region_boxes(regions: Sequence[Mapping[str, Any]], frame_id: str) -> FrameBoxes:
    return FrameBoxes([region["bbox"] for region in regions], None, frame_id)


def _texts(regions: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(region.get("text") or "") for region in regions]


class RegionCounts(TypedDict):
    """The region counts of :class:`OcrAccuracyReport`, by its field names."""

    matched_regions: int
    unmatched_reference: int
    unmatched_hypothesis: int


def _paired_texts(
    frame_pairs: Iterable[tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]], min_iou: float
) -> tuple[list[str], list[str], list[int], RegionCounts]:
    """Texts paired by box as :func:`region_text_pairs` pairs them, with the frame of each pair."""
    frames = [(list(reference), list(hypothesis)) for reference, hypothesis in frame_pairs]
    matchings = match_frames(
        ((_region_boxes(ref, str(i)), _region_boxes(hyp, str(i))) for i, (ref, hyp) in enumerate(frames)), min_iou
    )
    references: list[str] = []
    hypotheses: list[str] = []
    frame_of: list[int] = []
    counts = RegionCounts(matched_regions=0, unmatched_reference=0, unmatched_hypothesis=0)
    for position, ((reference, hypothesis), matching) in enumerate(zip(frames, matchings)):
        ref_texts, hyp_texts = _texts(reference), _texts(hypothesis)
        before = len(references)
        references += [ref_texts[i] for i in matching.index_a] + [ref_texts[i] for i in matching.unmatched_a]
        hypotheses += [hyp_texts[i] for i in matching.index_b] + [""] * len(matching.unmatched_a)
        references += [""] * len(matching.unmatched_b)
        hypotheses += [hyp_texts[i] for i in matching.unmatched_b]
        frame_of += [position] * (len(references) - before)
        counts["matched_regions"] += len(matching.index_a)
        counts["unmatched_reference"] += len(matching.unmatched_a)
        counts["unmatched_hypothesis"] += len(matching.unmatched_b)
    return references, hypotheses, frame_of, counts


def region_text_pairs(
    frame_pairs: Iterable[tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]],
    min_iou: float = DEFAULT_MIN_IOU,
) -> tuple[list[str], list[str], RegionCounts]:
    """Reference and hypothesis texts of all frames, paired by box, plus region counts.

    Each frame pair is ``(reference regions, hypothesis regions)`` with ``{"bbox", "text"}``
    regions. Unmatched regions pair with ``""`` (see the module docstring).
    """
    references, hypotheses, _, counts = _paired_texts(frame_pairs, min_iou)
    return references, hypotheses, counts


def frame_scores(
    frame_pairs: Iterable[tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]],
    min_iou: float = DEFAULT_MIN_IOU,
) -> list[CerScore]:
    """One :class:`CerScore` per frame pair (spaces counted), counted as :func:`ocr_accuracy` counts:
    the units the quality report resamples for its interval and ranks for its worst frames."""
    frame_list = list(frame_pairs)
    references, hypotheses, frame_of, _ = _paired_texts(frame_list, min_iou)
    refs = [normalize_text(text) for text in references]
    distances = edit_distances(refs, [normalize_text(text) for text in hypotheses], normalized=True)
    frame_index = np.asarray(frame_of, dtype=np.int64)
    lengths = np.fromiter(map(len, refs), dtype=np.int64, count=len(refs))
    size = len(frame_list)
    pairs = np.bincount(frame_index, minlength=size)
    characters = np.bincount(frame_index, weights=lengths, minlength=size)
    errors = np.bincount(frame_index, weights=distances, minlength=size)
    return [CerScore(int(p), int(c), int(e)) for p, c, e in zip(pairs, characters, errors)]


def ocr_frame_scores_between_annotators(
    annotations: pd.DataFrame, sources: Collection[str] | None = (Source.HUMAN.value,), min_iou: float = DEFAULT_MIN_IOU
) -> pd.DataFrame:
    """Per double-blind OCR frame: ``frame_id, author_a, author_b, characters, errors, accuracy``."""
    pairs = pair_annotations(annotations, "ocr", sources)
    scores = frame_scores(
        ((_regions(row.payload_a), _regions(row.payload_b)) for row in pairs.itertuples(index=False)), min_iou
    )
    table = pairs[["frame_id", "author_a", "author_b"]].copy()
    table["characters"] = [score.characters for score in scores]
    table["errors"] = [score.errors for score in scores]
    table["accuracy"] = [score.accuracy for score in scores]
    return table


def ocr_accuracy(
    frame_pairs: Iterable[tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]],
    min_iou: float = DEFAULT_MIN_IOU,
    workers: int = 1,
) -> OcrAccuracyReport:
    """OCR accuracy over frames, each ``(reference regions, hypothesis regions)``."""
    references, hypotheses, counts = region_text_pairs(frame_pairs, min_iou)
    report = text_accuracy(references, hypotheses, workers=workers)
    return dataclasses.replace(report, **counts)


def _regions(payload: str) -> list[dict[str, Any]]:
    return [box.item for box in iter_boxes(Task.OCR.value, load_payload(payload))]


def ocr_accuracy_between_annotators(
    annotations: pd.DataFrame,
    sources: Collection[str] | None = (Source.HUMAN.value,),
    min_iou: float = DEFAULT_MIN_IOU,
    workers: int = 1,
) -> OcrAccuracyReport:
    """Annotator vs annotator on double-blind OCR items (first annotator = reference)."""
    pairs = pair_annotations(annotations, "ocr", sources)
    return ocr_accuracy(
        ((_regions(row.payload_a), _regions(row.payload_b)) for row in pairs.itertuples(index=False)), min_iou, workers
    )


def ocr_accuracy_ai_vs_final(
    annotations: pd.DataFrame, min_iou: float = DEFAULT_MIN_IOU, workers: int = 1
) -> OcrAccuracyReport:
    """AI pre-annotation (hypothesis) vs the final reviewed annotation (reference), per frame.

    ``annotations`` holds AnnotationRecord rows: the AI rows and the human/arbitrated rows. The
    final row of a frame is chosen as :func:`qwen_dataset.db.corrections.apply_corrections` does
    (arbitrated over human, latest edit first); frames nobody reviewed are left out, and of
    several AI rows of a frame the latest counts.
    """
    ocr = annotations[(annotations["task"] == "ocr") & (annotations["status"] == AnnotationStatus.OK.value)]
    ai = ocr[ocr["source"] == Source.AI.value].sort_values("created_at").drop_duplicates("frame_id", keep="last")
    people = ocr[ocr["source"].isin([Source.HUMAN.value, Source.ARBITRATED.value])]
    final = apply_corrections(ai.iloc[0:0], people)
    joined = final[["frame_id", "payload"]].merge(
        ai[["frame_id", "payload"]], on="frame_id", suffixes=("_final", "_ai")
    )
    return ocr_accuracy(
        ((_regions(row.payload_final), _regions(row.payload_ai)) for row in joined.itertuples(index=False)),
        min_iou,
        workers,
    )
