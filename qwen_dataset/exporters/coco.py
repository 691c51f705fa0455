"""OCR regions as a COCO detection dataset (one category, ``text``).

Readable by ``pycocotools.coco.COCO``; each annotation keeps what COCO has no field for (the text,
its language, provenance) under ``attributes``, the way CVAT's COCO export does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import pandas as pd

from qwen_dataset.exporters import checked_regions, final_annotations, frame_sizes
from qwen_dataset.geometry import to_coco
from qwen_dataset.records import Task
from qwen_dataset.storage import atomic_writer

TEXT_CATEGORY = {"id": 1, "name": "text", "supercategory": "ocr"}


def coco_info() -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    return {
        "description": "qwen-dataset OCR export",
        "version": "1.0",
        "year": now.year,
        "contributor": "qwen-dataset",
        "date_created": now.isoformat(timespec="seconds"),
    }


def coco_annotation(annotation_id: int, image_id: int, region: Any) -> dict[str, Any]:
    """One COCO annotation from a :func:`records.regions_table` row (pixels, ``[x, y, w, h]``)."""
    x1, y1, x2, y2 = float(region.x1), float(region.y1), float(region.x2), float(region.y2)
    x, y, w, h = to_coco([x1, y1, x2, y2])
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": TEXT_CATEGORY["id"],
        "bbox": [x, y, w, h],
        "area": w * h,
        "iscrowd": 0,
        "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]],
        "attributes": {
            "text": region.text,
            "language": region.language,
            "source": region.source,
            "annotation_id": region.annotation_id,
            "reading_order": int(region.reading_order),
        },
    }


def _write_array(handle: IO[bytes], key: str, items: Iterator[dict[str, Any]], last: bool = False) -> int:
    """Stream ``"key": [item, ...]`` one item at a time; returns how many were written."""
    handle.write(f'"{key}": ['.encode())
    count = 0
    for item in items:
        handle.write((b",\n" if count else b"\n") + json.dumps(item, ensure_ascii=False).encode("utf-8"))
        count += 1
    handle.write(b"\n]" + (b"" if last else b",\n"))
    return count


def export_coco(
    annotations: pd.DataFrame,
    frames: pd.DataFrame,
    out_path: Path,
    image_ref: Callable[[str], str],
) -> dict[str, int]:
    """Write the final ``ocr`` annotations as COCO detection JSON; returns the counts written.

    Images are the frames with a final ok ``ocr`` annotation (see
    :func:`qwen_dataset.exporters.final_annotations`), numbered from 1 in ``frame_id`` order; a
    frame whose annotation has no regions is kept as an image without annotations (a true
    negative). Frames whose prelabel failed are left out: their content is unknown, and an empty
    image would claim they hold no text. Streamed to a temp file and renamed when complete.
    """
    chosen = final_annotations(annotations, Task.OCR.value)
    sizes = frame_sizes(frames, chosen["frame_id"])
    regions = checked_regions(chosen, frames, Task.OCR.value)
    image_ids = {frame_id: number for number, frame_id in enumerate(chosen["frame_id"], start=1)}

    def images() -> Iterator[dict[str, Any]]:
        for frame_id, image_id in image_ids.items():
            width, height = sizes[frame_id]
            yield {"id": image_id, "file_name": image_ref(frame_id), "width": width, "height": height, "frame_id": frame_id}

    def coco_annotations() -> Iterator[dict[str, Any]]:
        ordered = regions.assign(coco_image_id=regions["frame_id"].map(image_ids)).sort_values(
            ["coco_image_id", "reading_order", "region_index"], kind="stable"
        )
        for number, region in enumerate(ordered.itertuples(index=False), start=1):
            yield coco_annotation(number, int(region.coco_image_id), region)

    with atomic_writer(Path(out_path), "wb") as handle:
        handle.write(b"{\n")
        for key, value in (("info", coco_info()), ("licenses", []), ("categories", [TEXT_CATEGORY])):
            handle.write(f'"{key}": {json.dumps(value, ensure_ascii=False)},\n'.encode("utf-8"))
        image_count = _write_array(handle, "images", images())
        annotation_count = _write_array(handle, "annotations", coco_annotations(), last=True)
        handle.write(b"\n}\n")
    return {"images": image_count, "annotations": annotation_count, "categories": 1}
