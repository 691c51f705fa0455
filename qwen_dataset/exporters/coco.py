"""The boxes of a task as a COCO detection dataset.

=============== ========================================== ==================
task            boxes                                      categories
=============== ========================================== ==================
ocr             text regions                               ``text`` (one)
gui_action      UI elements                                one per role
spatial         objects                                    one per label
image_to_code   layout blocks (every node of the tree)     one per role
=============== ========================================== ==================

Readable by ``pycocotools.coco.COCO``; in a dataset folder the file is
``annotations/instances_<task>.json`` beside ``images/`` with ``file_name`` relative to
``images/`` (the layout Datumaro's ``coco_instances`` importer and Detectron2's
``register_coco_instances`` read). Boxes carry ``segmentation: []``. Each annotation keeps what COCO has no field for (the text,
role, label, provenance, the item's index in its payload) under ``attributes``, the way CVAT's
COCO export does. Category ids are stable for ``ocr`` (1 = text) and for the roles the templates
enumerate (in the template schema's order); labels outside that list (any spatial label, a role
a reviewer typed) get the next ids in order of first appearance. ``video_event`` has no boxes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pandas as pd

from qwen_dataset.exporters.stream import CHUNK_SIZE, AnnotationStream, BoxChecker, ExportAnnotation, dumps, gc_paused
from qwen_dataset.payloads import BOX_TASKS, BoxItem, BoxSource, box_source, task_spec
from qwen_dataset.prelabel.templates import TemplateError, load_template
from qwen_dataset.records import Task
from qwen_dataset.store.paths import atomic_writer


def coco_info(task: str = Task.OCR.value) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "description": f"qwen-dataset {task.replace('_', ' ')} export"
        if task != Task.OCR
        else "qwen-dataset OCR export",
        "version": "1.0",
        "year": now.year,
        "contributor": "qwen-dataset",
        "date_created": now.isoformat(timespec="seconds"),
    }


class CategoryIndex:
    """Category names -> ids: the known names first (stable ids), new names appended as met."""

    def __init__(self, known: list[str], supercategory: str) -> None:
        self.supercategory = supercategory
        self.ids: dict[str, int] = {}
        for name in known:
            self.id_for(name)

    def id_for(self, name: str) -> int:
        if name not in self.ids:
            self.ids[name] = len(self.ids) + 1
        return self.ids[name]

    def categories(self) -> list[dict[str, Any]]:
        return [{"id": number, "name": name, "supercategory": self.supercategory} for name, number in self.ids.items()]


def schema_labels(task: str) -> list[str]:
    """The values the task's template schema enumerates for its box label (empty when it names none).

    The label field comes from the payload registry (GUI elements: ``role``); the template's
    schema lists its allowed values in order, which gives those categories stable ids.
    """
    field = box_source(task).label_field
    try:
        schema = load_template(task).schema
    except TemplateError:
        return []
    return _enum_of(schema, field) if field else []


def _enum_of(schema: Any, field: str) -> list[str]:
    """The first ``enum`` given for property ``field`` anywhere in a JSON schema."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            properties = node.get("properties")
            declared = properties.get(field) if isinstance(properties, dict) else None
            if isinstance(declared, dict) and isinstance(declared.get("enum"), list):
                return [str(value) for value in declared["enum"]]
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend(reversed(node))
    return []


def category_index(task: str) -> CategoryIndex:
    """The category list a task's COCO export starts from: the fixed label, or the schema's labels."""
    if task not in BOX_TASKS:
        spec = task_spec(task)
        raise ValueError(
            f"task {spec.task!r} has no boxes to export as COCO; COCO exports cover {list(BOX_TASKS)} "
            f"(video_event is exported as JSONL, CSV or Label Studio tasks)"
        )
    source = box_source(task)
    known = [source.fixed_label] if source.label_field is None else schema_labels(task)
    return CategoryIndex(known, source.coco_supercategory)


def box_attributes(box: BoxItem, source: BoxSource, annotation: ExportAnnotation) -> dict[str, Any]:
    """What COCO has no field for: the item's own fields, its place in the payload, its provenance."""
    attributes = dict(box.item)  # a copy less two keys: cheaper than a filtering comprehension
    attributes.pop("bbox", None)
    attributes.pop("children", None)
    attributes[f"{source.item}_index"] = box.position
    if source.tree:
        attributes["parent_index"] = box.parent
        attributes["depth"] = box.depth
    attributes["source"] = annotation.source
    attributes["annotation_id"] = annotation.annotation_id
    return attributes


class CocoWriter:
    """Streams one task's COCO document into an open binary handle.

    The header and ``images`` (every frame of ``stream``, in order) are written at once; the
    boxes of each annotation given to :meth:`add` join ``annotations``, dumped a chunk at a time
    (one encoder call per chunk, its brackets dropped so the chunks join into one array);
    :meth:`close` writes ``categories``, last because labels met on the way are part of it.
    """

    def __init__(self, handle: IO[bytes], task: str, stream: AnnotationStream, image_ref: Callable[[str], str]) -> None:
        self._handle = handle
        self._task = task
        self._source = box_source(task)
        self.categories = category_index(task)
        self._pending: list[dict[str, Any]] = []
        self.images = self.annotations = 0
        handle.write(b"{\n")
        for key, value in (("info", coco_info(task)), ("licenses", [])):
            handle.write(f'"{key}": '.encode() + dumps(value) + b",\n")
        handle.write(b'"images": [')
        frame_ids = stream.frame_ids
        for start in range(0, len(frame_ids), CHUNK_SIZE):
            chunk = []
            for image_id, frame_id in enumerate(frame_ids[start : start + CHUNK_SIZE], start=start + 1):
                width, height = stream.sizes[frame_id]
                chunk.append(
                    {
                        "id": image_id,
                        "file_name": image_ref(frame_id),
                        "width": width,
                        "height": height,
                        "frame_id": frame_id,
                    }
                )
            self._write_items(chunk, first=start == 0)
        handle.write(b'],\n"annotations": [')
        self._count_images = len(frame_ids)

    def _write_items(self, items: list[dict[str, Any]], first: bool) -> None:
        if items:
            self._handle.write((b"" if first else b",") + dumps(items)[1:-1])

    def add(self, annotation: ExportAnnotation) -> None:
        """The boxes of the next annotation of the stream (the next image), in payload order."""
        self.images += 1
        for box, (x, y, w, h) in zip(annotation.box_items(), annotation.coco_boxes(), strict=True):
            self._pending.append(
                {
                    "id": self.annotations + len(self._pending) + 1,
                    "image_id": self.images,
                    "category_id": self.categories.id_for(box.label),
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                    # A plain box has no polygon: a rectangle written as segmentation too would
                    # come back from Datumaro (and other COCO readers) as a second annotation.
                    "segmentation": [],
                    "attributes": box_attributes(box, self._source, annotation),
                }
            )
        if len(self._pending) >= CHUNK_SIZE:
            self._flush()

    def _flush(self) -> None:
        self._write_items(self._pending, first=self.annotations == 0)
        self.annotations += len(self._pending)
        self._pending = []

    def close(self) -> dict[str, int]:
        """Write what is pending and the categories; returns the counts."""
        self._flush()
        categories = self.categories.categories()
        self._handle.write(b'],\n"categories": ' + dumps(categories) + b"\n}\n")
        return {"images": self._count_images, "annotations": self.annotations, "categories": len(categories)}


@gc_paused
def export_coco(
    annotations: pd.DataFrame,
    frames: pd.DataFrame,
    out_path: Path,
    image_ref: Callable[[str], str],
    *,
    task: str = Task.OCR.value,
) -> dict[str, int]:
    """Write the boxes of the final ``task`` annotations as COCO detection JSON; returns the counts.

    Images are the frames with a final ok annotation of the task (see
    :func:`qwen_dataset.exporters.stream.final_annotations`), numbered from 1 in ``frame_id`` order; a
    frame whose annotation has no boxes is kept as an image without annotations (a true
    negative). Frames whose prelabel failed are left out: their content is unknown, and an empty
    image would claim they hold nothing. Annotations are numbered from 1 in image order, then
    payload order (OCR: reading order). Streamed to a temp file and renamed when complete;
    boxes that stay empty after clipping to their frame fail the export, naming the annotations.
    """
    category_index(task)  # refuses a task without boxes before anything is opened
    stream = AnnotationStream(annotations, frames, task)
    checker = BoxChecker()
    with atomic_writer(Path(out_path)) as handle:
        writer = CocoWriter(handle, task, stream, image_ref)
        for annotation in stream.checked(checker):
            writer.add(annotation)
        checker.raise_if_any()
        return writer.close()
