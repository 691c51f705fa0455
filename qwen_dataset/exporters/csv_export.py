"""Every annotation item as one CSV row: regions, elements, actions, objects, relations, blocks, events.

A flat view for spreadsheets, pandas and SQL: one row per item, with the annotation's
provenance on every row and boxes in pixels of the frame. Columns (:data:`CSV_COLUMNS`):

* ``task, annotation_id, frame_id, upload_id, source, author, template_version, created_at``
  - which annotation the row belongs to and where it came from;
* ``image`` - ``image_ref(frame_id)`` when an ``image_ref`` is given, else empty;
* ``item, item_index`` - what the row is (below) and its position in the payload (OCR regions:
  in reading order; layout blocks: pre-order of the tree);
* ``x1, y1, x2, y2`` - the box in pixels (clipped into the frame, as in every export);
* ``text, label, action_type, target, point_x, point_y, end_x, end_y, direction, start, end``;
* ``attributes`` - a JSON object with the item's remaining fields, so nothing is lost.

===================== ============================================================================
item                  filled columns (attributes)
===================== ============================================================================
region (ocr)          box, text, label = ``text`` (font_style, language, confidence, reading_order)
element (gui_action)  box, text, label = role (any other field of the element)
instruction           text = the instruction the actions carry out (requested_instruction)
action                action_type, target, point_x/y, end_x/y, text, direction (box, amount, duration)
object (spatial)      box, label (occluded, depth_rank: 0 = nearest, if ranked)
relation              label = predicate (subject, object: object indices)
block (image_to_code) box, label = role (tag, parent_index, depth)
html                  text = the page's HTML
event (video_event)   start, end (seconds), text = description (frame_ids, start_raw, end_raw)
none                  an annotation with no items, so every exported annotation has a row
===================== ============================================================================

Empty cells mean "not applicable" (or ``None``). Written as the ``csv`` module writes it (RFC 4180
quoting, so texts may hold commas, quotes and newlines) into a temp file renamed when complete.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pandas as pd

from qwen_dataset.exporters.stream import CHUNK_SIZE, AnnotationStream, BoxChecker, ExportAnnotation, dumps, gc_paused
from qwen_dataset.payloads import TASK_ORDER, box_source
from qwen_dataset.records import Task
from qwen_dataset.store.paths import atomic_writer

PROVENANCE_COLUMNS = (
    "task",
    "annotation_id",
    "frame_id",
    "upload_id",
    "source",
    "author",
    "template_version",
    "created_at",
)
ITEM_COLUMNS = (
    "image",
    "item",
    "item_index",
    "x1",
    "y1",
    "x2",
    "y2",
    "text",
    "label",
    "action_type",
    "target",
    "point_x",
    "point_y",
    "end_x",
    "end_y",
    "direction",
    "start",
    "end",
    "attributes",
)
CSV_COLUMNS: tuple[str, ...] = PROVENANCE_COLUMNS + ITEM_COLUMNS
_ACTION_KNOWN = {"type", "target", "point", "end_point", "text", "direction"}

Item = dict[str, Any]
_TAIL = ITEM_COLUMNS.index("action_type")  # the columns after text and label; a box row leaves them empty


def _point_cells(point: Sequence[float] | None, prefix: str) -> Item:
    if point is None:
        return {}
    return {f"{prefix}_x": point[0], f"{prefix}_y": point[1]}


def _attributes(values: dict[str, Any]) -> str:
    kept = {key: value for key, value in values.items() if value is not None} if None in values.values() else values
    return dumps(kept, sort_keys=True).decode("utf-8") if kept else ""


def box_rows(
    annotation: ExportAnnotation, image: str, more: Callable[[int], dict[str, Any]] | None = None
) -> Iterator[list[Any]]:
    """One row (the :data:`ITEM_COLUMNS` cells) per box: the item's text and label; its other
    fields, a tree node's place and ``more(box_index)`` as attributes."""
    source = box_source(annotation.task)
    skipped = {"bbox", "children", "text", source.label_field or ""}
    empty = [None] * (len(ITEM_COLUMNS) - _TAIL - 1)
    for box in annotation.box_items():
        item = box.item
        extra = dict(item)  # a copy less the skipped keys: cheaper than a filtering comprehension
        for key in skipped:
            extra.pop(key, None)
        if source.tree:
            extra.update(parent_index=box.parent, depth=box.depth)
        if more is not None:
            extra.update(more(box.position))
        yield [image, source.item, box.position, *item["bbox"], item.get("text"), box.label, *empty, _attributes(extra)]


def _cells(image: str, item: Item) -> list[Any]:
    item["image"] = image
    return [item.get(column) for column in ITEM_COLUMNS]


def ocr_rows(annotation: ExportAnnotation, image: str) -> Iterator[list[Any]]:
    yield from box_rows(annotation, image)


def gui_rows(annotation: ExportAnnotation, image: str) -> Iterator[list[Any]]:
    payload = annotation.payload
    yield from box_rows(annotation, image)
    yield _cells(
        image,
        {
            "item": "instruction",
            "item_index": 0,
            "text": payload.get("instruction", ""),
            "attributes": _attributes({"requested_instruction": payload.get("requested_instruction")}),
        },
    )
    for index, action in enumerate(payload.get("actions") or []):
        extra = {key: value for key, value in action.items() if key not in _ACTION_KNOWN}
        yield _cells(
            image,
            {
                "item": "action",
                "item_index": index,
                "action_type": action.get("type"),
                "target": action.get("target"),
                **_point_cells(action.get("point"), "point"),
                **_point_cells(action.get("end_point"), "end"),
                "text": action.get("text"),
                "direction": action.get("direction"),
                "attributes": _attributes(extra),
            },
        )


def spatial_rows(annotation: ExportAnnotation, image: str) -> Iterator[list[Any]]:
    payload = annotation.payload
    depth_rank = {index: rank for rank, index in enumerate(payload.get("depth_order") or [])}
    yield from box_rows(annotation, image, lambda index: {"depth_rank": depth_rank.get(index)})
    for index, relation in enumerate(payload.get("relations") or []):
        yield _cells(
            image,
            {
                "item": "relation",
                "item_index": index,
                "label": relation.get("predicate"),
                "attributes": _attributes({"subject": relation.get("subject"), "object": relation.get("object")}),
            },
        )


def image_to_code_rows(annotation: ExportAnnotation, image: str) -> Iterator[list[Any]]:
    yield from box_rows(annotation, image)
    yield _cells(image, {"item": "html", "item_index": 0, "text": annotation.payload.get("html", "")})


def video_event_rows(annotation: ExportAnnotation, image: str) -> Iterator[list[Any]]:
    for index, event in enumerate(annotation.payload.get("events") or []):
        yield _cells(
            image,
            {
                "item": "event",
                "item_index": index,
                "start": event.get("start"),
                "end": event.get("end"),
                "text": event.get("description", ""),
                "attributes": _attributes(
                    {
                        "frame_ids": event.get("frame_ids"),
                        "start_raw": event.get("start_raw"),
                        "end_raw": event.get("end_raw"),
                    }
                ),
            },
        )


ITEMS: dict[str, Callable[[ExportAnnotation, str], Iterator[list[Any]]]] = {
    Task.OCR.value: ocr_rows,
    Task.GUI_ACTION.value: gui_rows,
    Task.SPATIAL.value: spatial_rows,
    Task.IMAGE_TO_CODE.value: image_to_code_rows,
    Task.VIDEO_EVENT.value: video_event_rows,
}


def annotation_rows(annotation: ExportAnnotation, image: str = "") -> list[list[Any]]:
    """The CSV rows (lists in :data:`CSV_COLUMNS` order) of one checked annotation."""
    provenance = [
        annotation.task,
        annotation.annotation_id,
        annotation.frame_id,
        annotation.upload_id,
        annotation.source,
        annotation.author,
        annotation.template_version,
        annotation.created_at,
    ]
    rows = [provenance + cells for cells in ITEMS[annotation.task](annotation, image)]
    return rows or [provenance + [image, "none"] + [None] * (len(ITEM_COLUMNS) - 2)]


#: A cell holding one of these is quoted (``csv.QUOTE_MINIMAL`` of the excel dialect).
_NEEDS_QUOTES = re.compile(r'[,"\r\n]')


def csv_cell(value: Any) -> str:
    """One cell as ``csv.writer`` writes it: ``None`` empty, floats by ``repr``, quoted when needed."""
    if value is None:
        return ""
    # A float subclass (numpy's) is written by float's own repr, as the csv module does.
    text = value if isinstance(value, str) else float.__repr__(value) if isinstance(value, float) else str(value)
    return '"' + text.replace('"', '""') + '"' if _NEEDS_QUOTES.search(text) else text


def _column_cells(values: tuple[Any, ...]) -> list[str] | tuple[str, ...]:
    """The cells of one column: a column of one plain type is converted at C speed, cell by cell otherwise."""
    if values.count(None) == len(values):
        return [""] * len(values)
    try:
        joined = "".join(dict.fromkeys(values))  # the distinct cells; also the check that each is a string
    except TypeError:
        pass
    else:
        search = _NEEDS_QUOTES.search
        if search(joined) is None:
            return values
        return ['"' + value.replace('"', '""') + '"' if search(value) else value for value in values]
    kinds = set(map(type, values))
    if kinds == {float}:
        return list(map(float.__repr__, values))
    if kinds == {int}:
        return list(map(int.__repr__, values))
    return [csv_cell(value) for value in values]


def csv_text(rows: list[list[Any]]) -> str:
    """``csv.writer(...).writerows(rows)``'s text, built a column at a time: the csv module copies
    and checks every character in a loop, five times slower (same bytes, tested)."""
    if not rows:
        return ""
    if len(rows[0]) < 2 or any(len(row) != len(rows[0]) for row in rows):  # csv quotes a lone empty cell
        text = io.StringIO(newline="")
        csv.writer(text).writerows(rows)
        return text.getvalue()
    columns = [_column_cells(column) for column in zip(*rows, strict=True)]
    return "\r\n".join(map(",".join, zip(*columns, strict=True))) + "\r\n"


class CsvWriter:
    """Streams CSV rows (header first) into an open binary handle, a chunk of rows per write."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self._handle.write(csv_text([list(CSV_COLUMNS)]).encode("utf-8"))
        self._pending: list[list[Any]] = []
        self.count = 0

    def add(self, annotation: ExportAnnotation, image: str = "") -> None:
        """The rows of one checked annotation; ``image`` is written on each."""
        self._pending.extend(annotation_rows(annotation, image))
        if len(self._pending) >= CHUNK_SIZE:
            self._flush()

    def _flush(self) -> None:
        self._handle.write(csv_text(self._pending).encode("utf-8"))
        self.count += len(self._pending)
        self._pending = []

    def close(self) -> int:
        """Write what is pending; returns the row count (the atomic writer owns the file: it flushes,
        fsyncs and renames it)."""
        self._flush()
        return self.count


@gc_paused
def export_csv(
    annotations: pd.DataFrame,
    frames: pd.DataFrame,
    out_path: Path,
    image_ref: Callable[[str], str] | None = None,
    *,
    tasks: Iterable[str] | None = None,
    final_only: bool = True,
) -> int:
    """Write one row per item of the ``tasks`` annotations (default: all five); returns the row count.

    ``final_only=True`` exports the annotation each dataset uses (one per frame and task, see
    :func:`qwen_dataset.exporters.final_annotations`); ``False`` exports every ok annotation,
    AI prelabels and human corrections side by side, for audits. Rows come task by task (in
    pipeline order), then by ``frame_id``. Unknown frames and boxes that stay empty after
    clipping fail the export (nothing is written), as in every other format.
    """
    chosen = list(TASK_ORDER) if tasks is None else list(dict.fromkeys(tasks))
    unknown = [task for task in chosen if task not in TASK_ORDER]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}: the tasks are {list(TASK_ORDER)}")
    streams = [AnnotationStream(annotations, frames, task, final_only=final_only) for task in chosen]
    checker = BoxChecker()
    with atomic_writer(Path(out_path)) as handle:
        writer = CsvWriter(handle)
        for stream in streams:
            for annotation in stream.checked(checker):
                writer.add(annotation, image_ref(annotation.frame_id) if image_ref else "")
        checker.raise_if_any()
        return writer.close()
