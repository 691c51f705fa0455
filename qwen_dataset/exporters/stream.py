"""Streaming access to the annotations an export uses, one parsed payload at a time.

Every exporter walks the same sequence: the final annotation of each frame for one task (see
:func:`final_annotations`), in ``frame_id`` order, each with its frame's
size and its payload parsed once. :class:`AnnotationStream` provides it in chunks of
:data:`CHUNK_SIZE` annotations without building per-region tables or lists of dicts for the
whole batch, so a 100,000-frame export holds one chunk at a time, and a dataset folder's writers
all read the same parsed chunk (:mod:`qwen_dataset.exporters.bundle`).

Boxes go through :class:`BoxChecker`, a chunk at a time: clipped into the frame (absorbing the
sub-pixel drift of percent or 0-1000 round trips) with numpy, and an annotation whose box is still
empty is remembered; the exporter raises after writing to its temp file, so the error lists every
broken annotation and no half file is left behind. The chunk's boxes are converted to each
format's convention in one numpy pass (:class:`BoxGeometry`), with exactly the results of the
scalar functions of :mod:`qwen_dataset.geometry`.

JSON is parsed and written with orjson (:func:`loads`, :func:`dumps`): compact separators, the
same parsed content as the standard library's. Answers that a model learns to write keep the
standard library's spacing (:data:`dump_json`).
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import itertools
import json
import json.encoder
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Any, ParamSpec, TypeVar

import numpy as np
import orjson
import pandas as pd

from qwen_dataset.geometry import QWEN_SCALE, clip_box, is_valid_box
from qwen_dataset.payloads import BoxItem, box_items, put_in_order
from qwen_dataset.records import SOURCE_PRECEDENCE, AnnotationStatus

#: ``json.dumps(value, ensure_ascii=False)`` without building an encoder per call (a million calls).
dump_json: Callable[[Any], str] = json.JSONEncoder(ensure_ascii=False).encode
#: ``dump_json`` of one string: the standard library's own string encoder, for text built by hand.
encode_json_string: Callable[[str], str] = json.encoder.encode_basestring

#: Annotations parsed, checked and converted together (memory holds one chunk, numpy sees many boxes).
CHUNK_SIZE = 512

_P = ParamSpec("_P")
_R = TypeVar("_R")


def gc_paused(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``function`` with Python's cycle collector paused (restored after, even on error).

    What an export allocates (parsed payloads, output dicts) holds no reference cycles and is
    freed by reference counting as each chunk is written; the cycle collector, started every few
    hundred allocations, would only rescan the survivors: a third of an export's time, measured.
    """

    @functools.wraps(function)
    def paused(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return paused


def loads(text: str | bytes) -> Any:
    """Parse JSON with orjson; text orjson refuses (``NaN``, which the standard library writes) is
    parsed as the standard library does, so no stored payload that loaded before fails now."""
    if not text:
        return {}
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """UTF-8 JSON of ``value`` with orjson; what orjson cannot write (integer keys, integers beyond
    64 bits) is written by the standard library, with the same parsed content."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys).encode("utf-8")


#: Provenance and identity columns carried by every :class:`ExportAnnotation`.
ROW_COLUMNS: tuple[str, ...] = (
    "annotation_id",
    "frame_id",
    "upload_id",
    "task",
    "source",
    "author",
    "template_version",
    "created_at",
    "payload",
)


@dataclasses.dataclass(slots=True)
class ExportAnnotation:
    """One annotation as an exporter sees it: provenance, frame size and the parsed payload."""

    annotation_id: str
    frame_id: str
    upload_id: str
    task: str
    source: str
    author: str
    template_version: str
    created_at: str
    width: int
    height: int
    payload: dict[str, Any]
    #: Set by :meth:`BoxChecker.check_chunk`: the payload's boxes (checked, in order) and where
    #: they start in the chunk's :class:`BoxGeometry`.
    boxes: list[BoxItem] | None = None
    geometry: BoxGeometry | None = None
    first: int = 0

    def box_items(self) -> list[BoxItem]:
        """The payload's boxes in :func:`iter_boxes` order."""
        if self.boxes is None:
            self.boxes = box_items(self.task, self.payload)
        return self.boxes

    def _geometry(self) -> BoxGeometry:
        if self.geometry is None:
            # Not checked: the workbench's editor shows a stored payload as it is, unclipped.
            boxes = np.array([box.item["bbox"] for box in self.box_items()], dtype=float).reshape(-1, 4)
            sizes = np.ones(len(boxes))
            self.geometry, self.first = BoxGeometry(boxes, sizes * self.width, sizes * self.height), 0
        return self.geometry

    def qwen_boxes(self) -> list[list[int]]:
        """Its boxes in Qwen3-VL's 0-1000 scale (:func:`qwen_dataset.geometry.to_qwen_1000`)."""
        return self._geometry().qwen_1000[self.first : self.first + len(self.box_items())]

    def label_studio_boxes(self) -> list[list[float]]:
        """Its boxes as Label Studio percent ``[x, y, width, height]`` (:func:`qwen_dataset.geometry.to_label_studio`)."""
        return self._geometry().label_studio[self.first : self.first + len(self.box_items())]

    def coco_boxes(self) -> list[list[float]]:
        """Its boxes as COCO ``[x, y, w, h]`` (:func:`qwen_dataset.geometry.to_coco`)."""
        return self._geometry().coco[self.first : self.first + len(self.box_items())]


@dataclasses.dataclass
class BoxGeometry:
    """The checked pixel boxes of a chunk, ``(N, 4)``, with each one's frame ``width`` and
    ``height``; each edge convention is computed once for the chunk, with the same float
    operations in the same order as :mod:`qwen_dataset.geometry` (so the same numbers)."""

    pixels: np.ndarray
    widths: np.ndarray
    heights: np.ndarray

    @cached_property
    def qwen_1000(self) -> list[list[int]]:
        scales = np.stack([self.widths, self.heights, self.widths, self.heights], axis=1)
        # np.rint rounds half to even, as Python's round() does.
        scaled = np.clip(np.rint(self.pixels / scales * QWEN_SCALE), 0, QWEN_SCALE)
        return np.nan_to_num(scaled).astype(np.int64).tolist()

    @cached_property
    def label_studio(self) -> list[list[float]]:
        x1, y1, x2, y2 = self.pixels.T
        w, h = self.widths, self.heights
        percent = np.stack([x1 / w * 100.0, y1 / h * 100.0, (x2 - x1) / w * 100.0, (y2 - y1) / h * 100.0], axis=1)
        return percent.tolist()

    @cached_property
    def coco(self) -> list[list[float]]:
        x1, y1, x2, y2 = self.pixels.T
        return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1).tolist()


def frame_size_index(frames: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """``frame_id -> (width, height)``; the first row wins if a frame is listed twice."""
    index: dict[str, tuple[int, int]] = {}
    columns = (frames["frame_id"].tolist(), frames["width"].tolist(), frames["height"].tolist())
    for frame_id, width, height in zip(*columns, strict=True):
        index.setdefault(frame_id, (int(width), int(height)))
    return index


def require_known_frames(frame_ids: list[str], sizes: dict[str, tuple[int, int]]) -> None:
    """Refuse annotations of frames the manifest does not list (their size would be a guess)."""
    missing = list(dict.fromkeys(frame_id for frame_id in frame_ids if frame_id not in sizes))
    if missing:
        raise ValueError(
            f"{len(missing)} annotated frame(s) are missing from the frames manifest "
            f"(first: {missing[:5]}); export the annotations together with the frames manifest of the same batch"
        )


def final_annotations(annotations: pd.DataFrame, task: str) -> pd.DataFrame:
    """The annotation of each frame that a dataset uses for ``task``, sorted by ``frame_id``.

    Only ``status == "ok"`` rows count (failed prelabels carry no payload worth training on).
    When a frame has several, an arbitrated one beats a human one, which beats the AI prelabel;
    among equals the newest ``created_at`` wins. One frame therefore never yields two samples
    with different answers.
    """
    return annotations.iloc[chosen_rows(annotations, task)].reset_index(drop=True)


def chosen_rows(annotations: pd.DataFrame, task: str, *, final_only: bool = True) -> np.ndarray:
    """Row positions in ``annotations`` of the ok ``task`` annotations an export uses, in export order.

    ``final_only``: :func:`final_annotations`' choice; otherwise every ok one, by frame, then
    ``created_at``, then ``annotation_id``. Only the key columns are sorted, so the payloads are
    neither copied nor sorted.
    """
    mask = ((annotations["status"] == AnnotationStatus.OK.value) & (annotations["task"] == task)).to_numpy()
    keys = annotations.loc[mask, ["frame_id", "source", "created_at", "annotation_id"]]
    keys = keys.assign(_position=np.flatnonzero(mask))
    if not final_only:
        ordered = keys.sort_values(["frame_id", "created_at", "annotation_id"], kind="stable")
        return ordered["_position"].to_numpy()
    ranked = keys.assign(_precedence=keys["source"].map(SOURCE_PRECEDENCE).fillna(len(SOURCE_PRECEDENCE)))
    ranked = ranked.sort_values(["frame_id", "_precedence", "created_at"], ascending=[True, True, False], kind="stable")
    return ranked.drop_duplicates("frame_id", keep="first")["_position"].to_numpy()


def column_chunks(
    table: pd.DataFrame, rows: np.ndarray, names: tuple[str, ...], size: int = CHUNK_SIZE
) -> Iterator[list[list[Any]]]:
    """The values of columns ``names`` at positions ``rows``, as Python lists, ``size`` rows at a
    time: only one chunk of a manifest's texts (the payloads) is ever held as Python objects."""
    selected = table[list(names)]
    for start in range(0, len(rows), size):
        chunk = selected.take(rows[start : start + size])
        yield [chunk[name].tolist() for name in names]


class AnnotationStream:
    """The annotations of one task that go into an export, streamed in ``frame_id`` order.

    ``final_only=True`` (datasets): the one final ok annotation per frame. ``final_only=False``
    (audit views such as CSV): every ok annotation of the task, by frame then ``created_at``.
    Unknown frames are refused here, before anything is written. The payloads stay in the
    manifest until their chunk is read: memory holds one chunk's Python objects, whatever the
    batch's size.
    """

    def __init__(self, annotations: pd.DataFrame, frames: pd.DataFrame, task: str, *, final_only: bool = True) -> None:
        self.task = task
        self._rows = chosen_rows(annotations, task, final_only=final_only)
        self._source = annotations
        self.frame_ids: list[str] = annotations["frame_id"].take(self._rows).tolist()
        self.sizes = frame_size_index(frames)
        require_known_frames(self.frame_ids, self.sizes)

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[ExportAnnotation]:
        """Every annotation, parsed, not yet checked."""
        for chunk in self._parsed_chunks(CHUNK_SIZE):
            yield from chunk

    def _parsed_chunks(self, size: int) -> Iterator[list[ExportAnnotation]]:
        sizes = self.sizes
        for columns in column_chunks(self._source, self._rows, ROW_COLUMNS, size):
            yield [
                ExportAnnotation(
                    annotation_id,
                    frame_id,
                    upload_id,
                    task,
                    source,
                    author,
                    version,
                    created_at,
                    *sizes[frame_id],
                    loads(payload),
                )
                for annotation_id, frame_id, upload_id, task, source, author, version, created_at, payload in zip(
                    *columns, strict=True
                )
            ]

    def chunks(self, checker: BoxChecker, size: int = CHUNK_SIZE) -> Iterator[list[ExportAnnotation]]:
        """The annotations in chunks of ``size``, each chunk's boxes checked and converted at once."""
        for chunk in self._parsed_chunks(size):
            checker.check_chunk(chunk)
            yield chunk

    def checked(self, checker: BoxChecker, size: int = CHUNK_SIZE) -> Iterator[ExportAnnotation]:
        """Every annotation, checked by ``checker`` a chunk at a time (see :meth:`chunks`)."""
        for chunk in self.chunks(checker, size):
            yield from chunk


def _float_quads(boxes: list[Any]) -> bool:
    """True when every box is a list of four Python floats (what a checked payload holds)."""
    return (
        set(map(type, boxes)) == {list}
        and set(map(len, boxes)) == {4}
        and set(map(type, itertools.chain.from_iterable(boxes))) == {float}
    )


class BoxChecker:
    """Clips boxes into their frame and remembers annotations whose boxes are empty or malformed."""

    def __init__(self) -> None:
        self.bad: dict[str, None] = {}

    def check(self, annotation_id: str, box: Any, width: int, height: int) -> list[float]:
        """The box clipped into ``width`` x ``height``; a broken one is recorded (see :meth:`raise_if_any`)."""
        # Fast path for the common case, a valid box already inside its frame: clipping would
        # return it unchanged. Saves half the export time spent on geometry at a million boxes.
        if type(box) is list and len(box) == 4:
            x1, y1, x2, y2 = box
            if type(x1) is float and type(y1) is float and type(x2) is float and type(y2) is float:
                if 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height:
                    return box
        try:
            clipped = clip_box(box, width, height)
        except (TypeError, ValueError):  # not four numbers
            self.bad.setdefault(annotation_id)
            return [0.0, 0.0, 0.0, 0.0]
        if not is_valid_box(clipped, width, height):
            self.bad.setdefault(annotation_id)
        return clipped

    def check_chunk(self, annotations: list[ExportAnnotation]) -> BoxGeometry:
        """Put each payload's items in order, clip every box of ``annotations`` into its frame at
        once and attach the chunk's :class:`BoxGeometry` to each annotation.

        Same results as :meth:`check` box by box: a box inside its frame is kept as it is, one
        reaching out is clipped, a broken one recorded. A chunk holding a box that is not four
        numbers is checked box by box.
        """
        items: list[BoxItem] = []
        counts: list[int] = []
        for annotation in annotations:
            put_in_order(annotation.task, annotation.payload)
            annotation.boxes = None
            annotation.first = len(items)
            walked = annotation.box_items()
            items.extend(walked)
            counts.append(len(walked))
        widths = np.repeat(np.array([a.width for a in annotations], dtype=float), counts)
        heights = np.repeat(np.array([a.height for a in annotations], dtype=float), counts)
        owners = np.repeat(np.arange(len(annotations)), counts)
        raw = [box.item.get("bbox") for box in items]
        floats = _float_quads(raw)
        try:
            if floats:
                coordinates = itertools.chain.from_iterable(raw)  # type: ignore[arg-type]  # lists, checked above
                boxes = np.fromiter(coordinates, np.float64, 4 * len(raw)).reshape(-1, 4)
            else:
                boxes = np.array(raw, dtype=float) if raw else np.empty((0, 4))
            if boxes.ndim != 2 or boxes.shape[1] != 4:
                raise ValueError("not four numbers")
        except (TypeError, ValueError):
            pixels = self._check_one_by_one(annotations, items, owners)
        else:
            pixels = self._check_array(annotations, boxes, widths, heights, owners)
        if not (floats and pixels is boxes):  # else every stored box already is its checked box
            for box, row in zip(items, pixels.tolist(), strict=True):
                box.item["bbox"] = row
        geometry = BoxGeometry(pixels, widths, heights)
        for annotation in annotations:
            annotation.geometry = geometry
        return geometry

    def _check_array(
        self,
        annotations: list[ExportAnnotation],
        boxes: np.ndarray,
        widths: np.ndarray,
        heights: np.ndarray,
        owners: np.ndarray,
    ) -> np.ndarray:
        x1, y1, x2, y2 = boxes.T
        inside = (0 <= x1) & (x1 < x2) & (x2 <= widths) & (0 <= y1) & (y1 < y2) & (y2 <= heights)
        if inside.all():
            return boxes
        limits = np.stack([widths, heights, widths, heights], axis=1)
        clipped = np.minimum(np.maximum(boxes, 0.0), limits)
        # np.maximum keeps NaN, as _clamp does; a NaN box stays broken.
        cx1, cy1, cx2, cy2 = clipped.T
        valid = (0 <= cx1) & (cx1 < cx2) & (cx2 <= widths) & (0 <= cy1) & (cy1 < cy2) & (cy2 <= heights)
        for owner in owners[~valid].tolist():
            self.bad.setdefault(annotations[owner].annotation_id)
        return np.where(inside[:, None], boxes, clipped)

    def _check_one_by_one(
        self, annotations: list[ExportAnnotation], items: list[BoxItem], owners: np.ndarray
    ) -> np.ndarray:
        rows = []
        for box, owner in zip(items, owners.tolist(), strict=True):
            annotation = annotations[owner]
            rows.append(self.check(annotation.annotation_id, box.item.get("bbox"), annotation.width, annotation.height))
        return np.array(rows, dtype=float).reshape(-1, 4)

    def raise_if_any(self) -> None:
        if self.bad:
            bad = list(self.bad)
            raise ValueError(
                f"{len(bad)} annotation(s) have empty boxes or boxes outside their frame (first: {bad[:5]}); "
                f"correct them in the review workbench or let the geometry gate reject them before exporting"
            )


def check_boxes(annotation: ExportAnnotation, checker: BoxChecker) -> dict[str, Any]:
    """The payload with every box clipped into the frame (in place) and its items in their task's order."""
    checker.check_chunk([annotation])
    return annotation.payload
