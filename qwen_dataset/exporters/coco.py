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

import json
from collections.abc import Callable, Iterator
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


def _write_array(handle: IO[bytes], key: str, chunks: Iterator[list[dict[str, Any]]], last: bool = False) -> int:
    """Stream ``"key": [item, ...]`` a chunk of items at a time; returns how many were written.

    One encoder call per chunk: the chunk is dumped as a JSON array and its brackets dropped, so
    chunks join with a comma into one array."""
    handle.write(f'"{key}": ['.encode())
    count = 0
    for chunk in chunks:
        if not chunk:
            continue
        handle.write((b"," if count else b"") + dumps(chunk)[1:-1])
        count += len(chunk)
    handle.write(b"]" + (b"" if last else b",\n"))
    return count


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
    attributes = {key: value for key, value in box.item.items() if key not in ("bbox", "children")}
    attributes[f"{source.item}_index"] = box.position
    if source.tree:
        attributes["parent_index"] = box.parent
        attributes["depth"] = box.depth
    attributes["source"] = annotation.source
    attributes["annotation_id"] = annotation.annotation_id
    return attributes


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
    categories = category_index(task)
    source = box_source(task)
    stream = AnnotationStream(annotations, frames, task)
    checker = BoxChecker()

    def images() -> Iterator[list[dict[str, Any]]]:
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
            yield chunk

    def coco_annotations() -> Iterator[list[dict[str, Any]]]:
        number = 0
        image_id = 0
        for chunk in stream.chunks(checker):
            items = []
            for annotation in chunk:
                image_id += 1
                for box, (x, y, w, h) in zip(annotation.box_items(), annotation.coco_boxes(), strict=True):
                    number += 1
                    items.append(
                        {
                            "id": number,
                            "image_id": image_id,
                            "category_id": categories.id_for(box.label),
                            "bbox": [x, y, w, h],
                            "area": w * h,
                            "iscrowd": 0,
                            # A plain box has no polygon: a rectangle written as segmentation too
                            # would come back from Datumaro (and other COCO readers) as a second
                            # annotation, a polygon beside the box.
                            "segmentation": [],
                            "attributes": box_attributes(box, source, annotation),
                        }
                    )
            yield items
        checker.raise_if_any()

    with atomic_writer(Path(out_path)) as handle:
        handle.write(b"{\n")
        for key, value in (("info", coco_info(task)), ("licenses", [])):
            handle.write(f'"{key}": {json.dumps(value, ensure_ascii=False)},\n'.encode())
        image_count = _write_array(handle, "images", images())
        annotation_count = _write_array(handle, "annotations", coco_annotations())
        # Categories last: labels met while streaming the annotations are part of the list.
        category_count = _write_array(handle, "categories", iter([categories.categories()]), last=True)
        handle.write(b"\n}\n")
    return {"images": image_count, "annotations": annotation_count, "categories": category_count}
