"""Streaming access to the annotations an export uses, one parsed payload at a time.

Every exporter walks the same sequence: the final annotation of each frame for one task (see
:func:`final_annotations`), in ``frame_id`` order, each with its frame's
size and its payload parsed once. :class:`AnnotationStream` provides it without building
per-region tables or lists of dicts for the whole batch, so a 100,000-frame export holds one
payload at a time.

Boxes go through :class:`BoxChecker`: clipped into the frame (absorbing the sub-pixel drift of
percent or 0-1000 round trips), and an annotation whose box is still empty is remembered; the
exporter raises after writing to its temp file, so the error lists every broken annotation and
no half file is left behind.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd

from qwen_dataset.geometry import clip_box, is_valid_box
from qwen_dataset.payloads import iter_boxes, put_in_order
from qwen_dataset.records import SOURCE_PRECEDENCE, AnnotationStatus, load_payload

#: ``json.dumps(value, ensure_ascii=False)`` without building an encoder per call (a million calls).
dump_json: Callable[[Any], str] = json.JSONEncoder(ensure_ascii=False).encode

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
    ok = annotations[(annotations["status"] == AnnotationStatus.OK.value) & (annotations["task"] == task)]
    ranked = ok.assign(_precedence=ok["source"].map(SOURCE_PRECEDENCE).fillna(len(SOURCE_PRECEDENCE)))
    ranked = ranked.sort_values(["frame_id", "_precedence", "created_at"], ascending=[True, True, False], kind="stable")
    return ranked.drop_duplicates("frame_id", keep="first").drop(columns="_precedence").reset_index(drop=True)


class AnnotationStream:
    """The annotations of one task that go into an export, streamed in ``frame_id`` order.

    ``final_only=True`` (datasets): the one final ok annotation per frame. ``final_only=False``
    (audit views such as CSV): every ok annotation of the task, by frame then ``created_at``.
    Unknown frames are refused here, before anything is written.
    """

    def __init__(self, annotations: pd.DataFrame, frames: pd.DataFrame, task: str, *, final_only: bool = True) -> None:
        self.task = task
        if final_only:
            chosen = final_annotations(annotations, task)
        else:
            ok = annotations[(annotations["status"] == AnnotationStatus.OK.value) & (annotations["task"] == task)]
            chosen = ok.sort_values(["frame_id", "created_at", "annotation_id"], kind="stable").reset_index(drop=True)
        self._columns = {name: chosen[name].tolist() for name in ROW_COLUMNS}
        self.sizes = frame_size_index(frames)
        require_known_frames(self._columns["frame_id"], self.sizes)

    def __len__(self) -> int:
        return len(self._columns["frame_id"])

    @property
    def frame_ids(self) -> list[str]:
        return self._columns["frame_id"]

    def __iter__(self) -> Iterator[ExportAnnotation]:
        sizes = self.sizes
        for annotation_id, frame_id, upload_id, task, source, author, version, created_at, payload in zip(
            *(self._columns[name] for name in ROW_COLUMNS), strict=True
        ):
            width, height = sizes[frame_id]
            yield ExportAnnotation(
                annotation_id,
                frame_id,
                upload_id,
                task,
                source,
                author,
                version,
                created_at,
                width,
                height,
                load_payload(payload),
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

    def raise_if_any(self) -> None:
        if self.bad:
            bad = list(self.bad)
            raise ValueError(
                f"{len(bad)} annotation(s) have empty boxes or boxes outside their frame (first: {bad[:5]}); "
                f"correct them in the review workbench or let the geometry gate reject them before exporting"
            )


def check_boxes(annotation: ExportAnnotation, checker: BoxChecker) -> dict[str, Any]:
    """The payload with every box clipped into the frame (in place) and its items in their task's order."""
    payload = put_in_order(annotation.task, annotation.payload)
    aid, width, height = annotation.annotation_id, annotation.width, annotation.height
    for box in iter_boxes(annotation.task, payload):
        box.item["bbox"] = checker.check(aid, box.item.get("bbox"), width, height)
    return payload
