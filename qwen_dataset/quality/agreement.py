"""IoU consistency between two annotators of a double-blind item.

Definition (the figure the quality report gates on, target: mean IoU > 0.85):

* **Matching, per frame.** Boxes of annotator A and annotator B are paired one-to-one with the
  Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) on the cost ``1 - IoU``, in two
  rounds: first only boxes with the *same label* may pair; then the boxes left over on both sides
  may pair *across labels*, and every such pair is a **label mismatch**. A pair is allowed only when
  its IoU is at least ``min_iou`` (default :data:`DEFAULT_MIN_IOU` = 0.1, must lie in (0, 1]): two
  boxes that barely touch are two different objects, not a sloppy copy of one. Within a round the
  matching has the most allowed pairs possible and, among those, the largest IoU sum; forbidden
  pairs are excluded from the assignment (not dropped afterwards), so they never crowd out an
  allowed pair.
* Labels are compared after ``strip()`` and ``casefold()``; OCR regions all carry the one label
  ``text``, so OCR matching is purely geometric.
* **mean IoU** (the gated figure) = the sum of the IoU of every matched pair over all frames,
  divided by the number of pairs *plus every box left without a partner* on either side: a box one
  annotator drew and the other did not is an object they disagree on, so it counts as a pair with
  IoU 0 (label mismatches count with their IoU: they measure where the two annotators drew, the
  mismatch count measures what they called it). Two annotators who drew 9 identical boxes while
  one of them drew a 10th have a mean IoU of 0.9, not 1.0.
* **matched mean IoU** = mean IoU over the matched pairs only (how precisely matched boxes sit);
  informative, never gated: it is blind to boxes without a partner.
* **precision / recall / F1 at IoU 0.5**, annotator A as reference: a true positive is a matched
  pair with the same label and IoU >= 0.5; precision = TP / boxes of B, recall = TP / boxes of A.
  (The pairs come from the matching above, not from a second matching at 0.5.)
* **unmatched** boxes on each side and **label mismatches** (with a count per label pair).
* **Empty frames.** A frame where neither annotator drew a box is perfect agreement: it adds no
  boxes and no pairs. Every figure whose denominator is zero is 1.0 when both sides are empty and
  0.0 otherwise (e.g. A drew 3 boxes, B none: mean IoU 0, precision 0, recall 0), and the same rule
  gives the per-frame figures.

Speed: frames with equal box counts are matched as one batch: one ``iou_matrix`` call for all of
them, then an exact shortcut that settles most frames without the Hungarian algorithm: when the
best allowed partner of every row (or of every column) is distinct, giving each its best partner
is optimal, because no matching can beat "each box gets its best partner". Only the remaining
frames run ``linear_sum_assignment`` one by one.

>>> m = match_boxes([[0, 0, 10, 10], [20, 0, 30, 10]], ["cat", "dog"],
...                 [[21, 0, 30, 10], [0, 0, 10, 9]], ["dog", "fox"])
>>> m.index_a.tolist(), m.index_b.tolist(), m.same_label.tolist()
([0, 1], [1, 0], [False, True])
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from qwen_dataset.geometry import iou_matrix
from qwen_dataset.payloads import BOX_TASKS, boxes_and_labels
from qwen_dataset.records import AnnotationStatus, Source

DEFAULT_MIN_IOU = 0.1
TRUE_POSITIVE_IOU = 0.5
TARGET_MEAN_IOU = 0.85

# Frames per batched IoU computation: ~1024 * N * M * 8 bytes per temporary keeps a chunk of
# 10-box frames in cache (measured faster than 4096 on 100,000 frames).
_CHUNK_FRAMES = 1024


class FrameBoxes(NamedTuple):
    """The boxes one annotator drew on one frame: ``(N, 4)`` xyxy pixels and N labels."""

    boxes: Any
    labels: Sequence[str] | None = None
    frame_id: str = ""


@dataclasses.dataclass(frozen=True)
class Matching:
    """One frame's matching: pair ``k`` is box ``index_a[k]`` of A with box ``index_b[k]`` of B."""

    index_a: np.ndarray
    index_b: np.ndarray
    iou: np.ndarray
    same_label: np.ndarray
    unmatched_a: np.ndarray
    unmatched_b: np.ndarray

    @property
    def label_mismatches(self) -> int:
        return int((~self.same_label).sum())

    @property
    def mean_iou(self) -> float:
        """Mean IoU of the pairs; 1.0 when neither side has a box, 0.0 when none matched."""
        if len(self.iou):
            return float(self.iou.mean())
        return 1.0 if not len(self.unmatched_a) and not len(self.unmatched_b) else 0.0


@dataclasses.dataclass(frozen=True)
class AgreementReport:
    """Aggregate IoU consistency over many frame pairs (see the module docstring)."""

    frames: int
    boxes_a: int
    boxes_b: int
    matched: int
    unmatched_a: int
    unmatched_b: int
    label_mismatches: int
    true_positives: int  # same label and IoU >= TRUE_POSITIVE_IOU
    mean_iou: float  # unmatched boxes count as IoU 0
    precision: float
    recall: float
    f1: float
    min_iou: float
    label_confusions: dict[tuple[str, str], int]  # (label of A, label of B) -> mismatched pairs
    matched_mean_iou: float = 1.0  # over the matched pairs only
    iou_sum: float = 0.0  # IoU summed over the matched pairs
    per_frame: pd.DataFrame | None = dataclasses.field(default=None, compare=False, repr=False)

    def passes(self, target: float = TARGET_MEAN_IOU) -> bool:
        return self.mean_iou > target

    def to_metadata(self) -> dict[str, Any]:
        """Plain numbers (and label confusions as ``"a -> b"`` keys) for asset metadata or JSON."""
        figures = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        figures.pop("per_frame")
        figures["label_confusions"] = {f"{a} -> {b}": n for (a, b), n in sorted(self.label_confusions.items())}
        return figures


# --------------------------------------------------------------------------------------------
# Inputs


def _as_boxes(boxes: Any, who: str) -> np.ndarray:
    array = np.asarray(boxes, dtype=float)
    if array.size == 0:
        return np.zeros((0, 4))
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{who}: boxes must be an (N, 4) array of [x1, y1, x2, y2] pixels, got shape {array.shape}")
    return array


def normalize_label(label: Any) -> str:
    return "" if label is None else str(label).strip().casefold()


class _LabelCodes:
    """Labels -> small integers, normalising each distinct raw label only once."""

    def __init__(self) -> None:
        self._by_raw: dict[Any, int] = {}
        self.names: list[str] = []  # code -> normalised label
        self._by_name: dict[str, int] = {}

    def _add(self, raw: Any) -> int:
        name = normalize_label(raw)
        code = self._by_name.setdefault(name, len(self.names))
        if code == len(self.names):
            self.names.append(name)
        self._by_raw[raw] = code
        return code

    def encode(self, labels: Sequence[Any] | None, count: int, who: str) -> list[int]:
        if labels is None:
            code = self._by_raw[None] if None in self._by_raw else self._add(None)
            return [code] * count
        if len(labels) != count:
            raise ValueError(f"{who}: {count} boxes but {len(labels)} labels; give one label per box (or None)")
        try:
            return list(map(self._by_raw.__getitem__, labels))
        except KeyError:
            return [self._by_raw[label] if label in self._by_raw else self._add(label) for label in labels]


def _check_min_iou(min_iou: float) -> None:
    if not 0 < min_iou <= 1:
        raise ValueError(
            f"min_iou must lie in (0, 1], got {min_iou}: a pair of boxes that do not overlap is never a match"
        )


# --------------------------------------------------------------------------------------------
# The batched matcher


def _hungarian(score: np.ndarray) -> np.ndarray:
    """Max-cardinality, max-IoU-sum matching of one frame; ``score < 0`` marks forbidden pairs."""
    # scipy.optimize takes ~0.4 s to import: only a batch with ambiguous frames pays it, not every
    # qc_report (an empty batch's run worker included).
    from scipy.optimize import linear_sum_assignment

    result = np.full(score.shape[0], -1)
    allowed = score >= 0
    rows = np.flatnonzero(allowed.any(axis=1))
    cols = np.flatnonzero(allowed.any(axis=0))
    sub_allowed = allowed[np.ix_(rows, cols)]
    # A forbidden pair costs more than any set of allowed pairs can save (each costs <= 1), so the
    # solver first maximises the number of allowed pairs, then their IoU sum.
    forbidden_cost = float(min(len(rows), len(cols)) + 1)
    cost = np.where(sub_allowed, 1.0 - score[np.ix_(rows, cols)], forbidden_cost)
    row_index, col_index = linear_sum_assignment(cost)
    keep = sub_allowed[row_index, col_index]
    result[rows[row_index[keep]]] = cols[col_index[keep]]
    return result


def one_to_one(score: np.ndarray, minimum: float) -> list[tuple[int, int]]:
    """Pairs ``(row, column)`` of a score matrix (values in [0, 1]): as many pairs with a score of
    at least ``minimum`` as possible and, among those, the largest score sum; the matching behind
    the box IoU, for other scores (a video's events by temporal IoU)."""
    if not score.size:
        return []
    chosen = _hungarian(np.where(score >= minimum, score, -1.0))
    return [(int(row), int(column)) for row, column in enumerate(chosen) if column >= 0]


def _distinct_choices(choice: np.ndarray, has_choice: np.ndarray, options: int) -> np.ndarray:
    """Per frame: do the members that have a choice all choose different options?"""
    chosen = (choice[..., None] == np.arange(options)) & has_choice[..., None]
    return (chosen.sum(axis=1) <= 1).all(axis=1)


def _best_matching(score: np.ndarray) -> np.ndarray:
    """Optimal matching of a batch ``(F, N, M)`` (``score < 0`` = forbidden) -> ``(F, N)`` column or -1."""
    frames, rows, cols = score.shape
    result = np.full((frames, rows), -1)
    allowed = score >= 0
    # asarray: numpy's stubs type any(axis=...) as "scalar or array"; on a 3-D score it is (F, N).
    row_has = np.asarray(allowed.any(axis=2))
    if not row_has.any():
        return result
    best_col = score.argmax(axis=2)
    by_rows = _distinct_choices(best_col, row_has, cols)
    result[by_rows] = np.where(row_has, best_col, -1)[by_rows]

    col_has = np.asarray(allowed.any(axis=1))
    best_row = score.argmax(axis=1)
    by_cols = _distinct_choices(best_row, col_has, rows) & ~by_rows
    frame_index, col_index = np.nonzero(col_has & by_cols[:, None])
    result[frame_index, best_row[frame_index, col_index]] = col_index

    for frame in np.flatnonzero(~by_rows & ~by_cols):
        result[frame] = _hungarian(score[frame])
    return result


def _assign(iou: np.ndarray, label_equal: np.ndarray, min_iou: float) -> np.ndarray:
    """Two-round matching of a batch: same label first, then across labels for the leftovers."""
    allowed = iou >= min_iou
    first = _best_matching(np.where(allowed & label_equal, iou, -1.0))
    frames, _, cols = iou.shape
    col_taken = np.zeros((frames, cols + 1), dtype=bool)  # column `cols` absorbs the -1s
    np.put_along_axis(col_taken, np.where(first >= 0, first, cols), True, axis=1)
    leftover = allowed & (first < 0)[:, :, None] & ~col_taken[:, None, :cols]
    second = _best_matching(np.where(leftover, iou, -1.0))
    return np.where(first >= 0, first, second)


class _Prepared(NamedTuple):
    frame_id: str
    boxes_a: np.ndarray
    codes_a: list[int]
    boxes_b: np.ndarray
    codes_b: list[int]


class _Chunk(NamedTuple):
    """Matched frames of equal shape: positions in the input, IoU, label equality, assignment."""

    positions: np.ndarray
    codes_a: np.ndarray
    codes_b: np.ndarray
    iou: np.ndarray
    label_equal: np.ndarray
    assignment: np.ndarray


def _prepare(pair: Any, position: int, labels: _LabelCodes) -> _Prepared:
    try:
        side_a, side_b = pair
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"frame pair #{position}: expected (FrameBoxes of A, FrameBoxes of B), got {type(pair).__name__}"
        ) from error
    side_a = side_a if isinstance(side_a, FrameBoxes) else FrameBoxes(*side_a)
    side_b = side_b if isinstance(side_b, FrameBoxes) else FrameBoxes(*side_b)
    frame_id = side_a.frame_id or side_b.frame_id or str(position)
    boxes_a = _as_boxes(side_a.boxes, f"frame {frame_id!r}, annotator A")
    boxes_b = _as_boxes(side_b.boxes, f"frame {frame_id!r}, annotator B")
    return _Prepared(
        frame_id,
        boxes_a,
        labels.encode(side_a.labels, len(boxes_a), f"frame {frame_id!r}, annotator A"),
        boxes_b,
        labels.encode(side_b.labels, len(boxes_b), f"frame {frame_id!r}, annotator B"),
    )


def _solve(prepared: Sequence[_Prepared], min_iou: float) -> Iterator[_Chunk]:
    """Match every prepared frame, batching frames with equal box counts."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for position, item in enumerate(prepared):
        if len(item.boxes_a) and len(item.boxes_b):
            groups[(len(item.boxes_a), len(item.boxes_b))].append(position)
    for members in groups.values():
        for start in range(0, len(members), _CHUNK_FRAMES):
            positions = np.asarray(members[start : start + _CHUNK_FRAMES])
            items = [prepared[p] for p in positions]
            boxes_a = np.stack([item.boxes_a for item in items])
            boxes_b = np.stack([item.boxes_b for item in items])
            codes_a = np.array([item.codes_a for item in items])
            codes_b = np.array([item.codes_b for item in items])
            iou = iou_matrix(boxes_a, boxes_b)
            label_equal = codes_a[:, :, None] == codes_b[:, None, :]
            yield _Chunk(positions, codes_a, codes_b, iou, label_equal, _assign(iou, label_equal, min_iou))


def _pair_values(chunk: _Chunk) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row of each frame: matched?, the pair's IoU, same label?, B's label code."""
    matched = chunk.assignment >= 0
    column = np.where(matched, chunk.assignment, 0)[:, :, None]
    iou = np.take_along_axis(chunk.iou, column, axis=2)[:, :, 0]
    same = np.take_along_axis(chunk.label_equal, column, axis=2)[:, :, 0]
    code_b = np.take_along_axis(chunk.codes_b, column[:, :, 0], axis=1)
    return matched, np.where(matched, iou, 0.0), same & matched, code_b


def match_boxes(
    boxes_a: Any,
    labels_a: Sequence[Any] | None,
    boxes_b: Any,
    labels_b: Sequence[Any] | None,
    min_iou: float = DEFAULT_MIN_IOU,
) -> Matching:
    """Match one frame's boxes of annotator A against annotator B (see the module docstring).

    ``boxes_*`` are ``(N, 4)`` xyxy pixel arrays (or lists); ``labels_*`` one label per box, or
    ``None`` when boxes carry no label.
    """
    return match_frames([(FrameBoxes(boxes_a, labels_a), FrameBoxes(boxes_b, labels_b))], min_iou)[0]


def match_frames(pairs: Iterable[tuple[Any, Any]], min_iou: float = DEFAULT_MIN_IOU) -> list[Matching]:
    """:func:`match_boxes` for many frame pairs at once (batched), in input order."""
    _check_min_iou(min_iou)
    labels = _LabelCodes()
    prepared = [_prepare(pair, position, labels) for position, pair in enumerate(pairs)]
    assignments: list[np.ndarray | None] = [None] * len(prepared)
    label_equal: list[np.ndarray | None] = [None] * len(prepared)
    ious: list[np.ndarray | None] = [None] * len(prepared)
    for chunk in _solve(prepared, min_iou):
        for offset, position in enumerate(chunk.positions):
            assignments[position] = chunk.assignment[offset]
            label_equal[position] = chunk.label_equal[offset]
            ious[position] = chunk.iou[offset]
    return [_matching(item, assignments[i], ious[i], label_equal[i]) for i, item in enumerate(prepared)]


def _matching(
    item: _Prepared, assignment: np.ndarray | None, iou: np.ndarray | None, equal: np.ndarray | None
) -> Matching:
    if assignment is None:  # one side (or both) has no box
        empty = np.zeros(0, dtype=int)
        return Matching(
            empty,
            empty,
            np.zeros(0),
            np.zeros(0, dtype=bool),
            np.arange(len(item.boxes_a)),
            np.arange(len(item.boxes_b)),
        )
    assert iou is not None and equal is not None, "solved together with the assignment"
    index_a = np.flatnonzero(assignment >= 0)
    index_b = assignment[index_a]
    return Matching(
        index_a=index_a,
        index_b=index_b,
        iou=iou[index_a, index_b],
        same_label=equal[index_a, index_b],
        unmatched_a=np.flatnonzero(assignment < 0),
        unmatched_b=np.setdiff1d(np.arange(len(item.boxes_b)), index_b),
    )


# --------------------------------------------------------------------------------------------
# Aggregation


def _ratio(numerator: np.ndarray | float, denominator: np.ndarray | float, both_empty: np.ndarray | bool) -> Any:
    """``numerator / denominator``; where the denominator is 0: 1.0 if both sides are empty, else 0.0."""
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(
            denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.where(both_empty, 1.0, 0.0)
        )
    return value


def _f1(precision: Any, recall: Any) -> Any:
    total = np.asarray(precision) + np.asarray(recall)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, 2 * np.asarray(precision) * np.asarray(recall) / np.where(total > 0, total, 1), 0.0)


def agreement(
    pairs: Iterable[tuple[Any, Any]],
    min_iou: float = DEFAULT_MIN_IOU,
    per_frame: bool = False,
) -> AgreementReport:
    """IoU consistency over many frames; each pair is ``(FrameBoxes of A, FrameBoxes of B)``.

    A plain ``(boxes, labels)`` or ``(boxes, labels, frame_id)`` tuple works as a ``FrameBoxes``.
    With ``per_frame=True`` the report carries a DataFrame with one row per frame pair (columns
    ``frame_id, boxes_a, boxes_b, matched, unmatched_a, unmatched_b, label_mismatches,
    true_positives, iou_sum, mean_iou, matched_mean_iou, precision, recall``).
    """
    _check_min_iou(min_iou)
    labels = _LabelCodes()
    prepared = [_prepare(pair, position, labels) for position, pair in enumerate(pairs)]
    count = len(prepared)
    boxes_a = np.fromiter((len(item.boxes_a) for item in prepared), dtype=np.int64, count=count)
    boxes_b = np.fromiter((len(item.boxes_b) for item in prepared), dtype=np.int64, count=count)
    matched = np.zeros(count, dtype=np.int64)
    mismatches = np.zeros(count, dtype=np.int64)
    true_positives = np.zeros(count, dtype=np.int64)
    iou_sum = np.zeros(count)
    confusion_codes: list[np.ndarray] = []
    for chunk in _solve(prepared, min_iou):
        is_matched, pair_iou, same, code_b = _pair_values(chunk)
        crossed = is_matched & ~same
        matched[chunk.positions] = is_matched.sum(axis=1)
        mismatches[chunk.positions] = crossed.sum(axis=1)
        true_positives[chunk.positions] = (same & (pair_iou >= TRUE_POSITIVE_IOU)).sum(axis=1)
        iou_sum[chunk.positions] = pair_iou.sum(axis=1)
        if crossed.any():
            confusion_codes.append(np.stack([chunk.codes_a[crossed], code_b[crossed]], axis=1))
    report = _report(
        boxes_a,
        boxes_b,
        matched,
        mismatches,
        true_positives,
        iou_sum,
        min_iou,
        _confusions(confusion_codes, labels.names),
    )
    if per_frame:
        frame_ids = [item.frame_id for item in prepared]
        report = dataclasses.replace(
            report,
            per_frame=_per_frame_table(frame_ids, boxes_a, boxes_b, matched, mismatches, true_positives, iou_sum),
        )
    return report


def units(report: AgreementReport) -> int:
    """The denominator of :attr:`AgreementReport.mean_iou`: matched pairs plus unmatched boxes."""
    return report.matched + report.unmatched_a + report.unmatched_b


def _confusions(confusion_codes: list[np.ndarray], names: Sequence[str]) -> dict[tuple[str, str], int]:
    if not confusion_codes:
        return {}
    pairs, counts = np.unique(np.concatenate(confusion_codes), axis=0, return_counts=True)
    return {(names[int(a)], names[int(b)]): int(n) for (a, b), n in zip(pairs, counts)}


def _report(boxes_a, boxes_b, matched, mismatches, true_positives, iou_sum, min_iou, confusions) -> AgreementReport:
    total_a, total_b = int(boxes_a.sum()), int(boxes_b.sum())
    total_matched, total_tp = int(matched.sum()), int(true_positives.sum())
    both_empty = total_a == 0 and total_b == 0
    total_iou = float(iou_sum.sum())
    precision = float(_ratio(total_tp, total_b, both_empty))
    recall = float(_ratio(total_tp, total_a, both_empty))
    return AgreementReport(
        frames=len(boxes_a),
        boxes_a=total_a,
        boxes_b=total_b,
        matched=total_matched,
        unmatched_a=total_a - total_matched,
        unmatched_b=total_b - total_matched,
        label_mismatches=int(mismatches.sum()),
        true_positives=total_tp,
        mean_iou=float(_ratio(total_iou, total_a + total_b - total_matched, both_empty)),
        precision=precision,
        recall=recall,
        f1=float(_f1(precision, recall)),
        min_iou=min_iou,
        label_confusions=confusions,
        matched_mean_iou=float(_ratio(total_iou, total_matched, both_empty)),
        iou_sum=total_iou,
    )


def _per_frame_table(frame_ids, boxes_a, boxes_b, matched, mismatches, true_positives, iou_sum) -> pd.DataFrame:
    both_empty = (boxes_a == 0) & (boxes_b == 0)
    return pd.DataFrame(
        {
            "frame_id": frame_ids,
            "boxes_a": boxes_a,
            "boxes_b": boxes_b,
            "matched": matched,
            "unmatched_a": boxes_a - matched,
            "unmatched_b": boxes_b - matched,
            "label_mismatches": mismatches,
            "true_positives": true_positives,
            "iou_sum": iou_sum,
            "mean_iou": _ratio(iou_sum, boxes_a + boxes_b - matched, both_empty),
            "matched_mean_iou": _ratio(iou_sum, matched, both_empty),
            "precision": _ratio(true_positives, boxes_b, both_empty),
            "recall": _ratio(true_positives, boxes_a, both_empty),
        }
    )


# --------------------------------------------------------------------------------------------
# From annotation manifests


def frame_boxes_from_payload(task: str, payload: Mapping[str, Any] | str, frame_id: str = "") -> FrameBoxes:
    """The boxes and labels of one canonical payload (a dict or its JSON text).

    Where a task keeps its boxes and what labels them is the payload registry's
    (:data:`qwen_dataset.payloads.TASKS`): OCR regions all carry ``text``, GUI elements their role,
    spatial objects their label, layout blocks (every node of the tree) their role.
    """
    if task not in BOX_TASKS:
        raise ValueError(f"task {task!r} has no boxes to compare; IoU agreement applies to {list(BOX_TASKS)}")
    boxes, labels = boxes_and_labels(task, payload or {})
    return FrameBoxes(boxes, labels, frame_id)


def pair_annotations(
    annotations: pd.DataFrame,
    task: str,
    sources: Collection[str] | None = (Source.HUMAN.value,),
) -> pd.DataFrame:
    """Pairs of annotations of the same frame and task by different authors.

    Keeps ``status == ok`` rows of ``task`` whose ``source`` is in ``sources`` (``None``: any), and
    per (frame, author) only the latest row. Every two authors of a frame make one pair; A is the
    author who annotated first (``created_at``, then author id), so it is the reference side.
    Returns ``frame_id, author_a, author_b, payload_a, payload_b`` sorted by frame and authors.
    """
    required = {"frame_id", "task", "source", "author", "status", "created_at", "payload"}
    missing = required - set(annotations.columns)
    if missing:
        raise ValueError(f"annotations lack column(s) {sorted(missing)}; pass AnnotationRecord rows (records.to_frame)")
    keep = (annotations["task"] == task) & (annotations["status"] == AnnotationStatus.OK.value)
    if sources is not None:
        keep &= annotations["source"].isin([str(source) for source in sources])
    rows = annotations.loc[keep, ["frame_id", "author", "created_at", "payload"]]
    rows = rows.sort_values(["frame_id", "author", "created_at"]).drop_duplicates(["frame_id", "author"], keep="last")
    both = rows.merge(rows, on="frame_id", suffixes=("_a", "_b"))
    first = (both["created_at_a"] < both["created_at_b"]) | (
        (both["created_at_a"] == both["created_at_b"]) & (both["author_a"] < both["author_b"])
    )
    pairs = both[first & (both["author_a"] != both["author_b"])]
    columns = ["frame_id", "author_a", "author_b", "payload_a", "payload_b"]
    return pairs[columns].sort_values(["frame_id", "author_a", "author_b"]).reset_index(drop=True)


def agreement_from_annotations(
    annotations: pd.DataFrame,
    task: str,
    sources: Collection[str] | None = (Source.HUMAN.value,),
    min_iou: float = DEFAULT_MIN_IOU,
    per_frame: bool = False,
) -> AgreementReport:
    """IoU consistency of the double-blind items in an annotation manifest.

    ``annotations`` holds :class:`~qwen_dataset.records.AnnotationRecord` rows of several
    authors; items annotated by only one author are not part of it. See :func:`pair_annotations`.
    The per-frame table (``per_frame=True``) also names ``author_a`` and ``author_b``.
    """
    pairs = pair_annotations(annotations, task, sources)
    report = agreement(
        (
            (
                frame_boxes_from_payload(task, row.payload_a, row.frame_id),
                frame_boxes_from_payload(task, row.payload_b, row.frame_id),
            )
            for row in pairs.itertuples(index=False)
        ),
        min_iou=min_iou,
        per_frame=per_frame,
    )
    if report.per_frame is not None:  # name the two annotators of each row for the reviewers
        report.per_frame.insert(1, "author_a", pairs["author_a"].to_numpy())
        report.per_frame.insert(2, "author_b", pairs["author_b"].to_numpy())
    return report
