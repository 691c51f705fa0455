"""A batch's export folder: the frames as files plus every dataset format, written atomically.

Layout of ``exports/<batch>/``::

    images/<frame_id>.png|jpg    hard links to the blobs (copies across file systems)
    qwen_ocr.jsonl               Qwen-VL fine-tune format (qwen-vl-finetune)
    coco.json                    COCO detection, text regions as one category
    manifest.json                what was written, with row counts and sha256
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pandas as pd

from qwen_dataset.exporters.coco import export_coco
from qwen_dataset.exporters.qwen_jsonl import export_qwen_ocr_jsonl
from qwen_dataset.storage import BlobStore, atomic_write_text, sha256_file

JPEG_MAGIC = b"\xff\xd8\xff"


@dataclasses.dataclass(frozen=True)
class ExportFile:
    format: str
    path: str
    records: int
    sha256: str


def _extension(blob: Path) -> str:
    with blob.open("rb") as handle:
        return ".jpg" if handle.read(3) == JPEG_MAGIC else ".png"


def _place(blob: Path, target: Path) -> None:
    """Hard-link a blob into the export (free and instant); copy when links are impossible."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(blob, tmp)
    except OSError:
        shutil.copyfile(blob, tmp)
    os.replace(tmp, target)


def link_images(frames: pd.DataFrame, blobs: BlobStore, out_dir: Path) -> dict[str, str]:
    """Put each frame's picture under ``images/``; returns frame_id -> path relative to out_dir."""
    refs: dict[str, str] = {}
    for row in frames.itertuples(index=False):
        blob = blobs.path(row.blob_uri)
        relative = f"images/{row.frame_id}{_extension(blob)}"
        _place(blob, out_dir / relative)
        refs[row.frame_id] = relative
    return refs


def write_batch_exports(annotations: pd.DataFrame, frames: pd.DataFrame, blobs: BlobStore, out_dir: Path) -> list[ExportFile]:
    """Write every format for one batch into ``out_dir`` and describe what was written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    refs = link_images(frames, blobs, out_dir)
    image_ref = refs.__getitem__
    jsonl_path = out_dir / "qwen_ocr.jsonl"
    coco_path = out_dir / "coco.json"
    lines = export_qwen_ocr_jsonl(annotations, frames, jsonl_path, image_ref)
    coco_counts = export_coco(annotations, frames, coco_path, image_ref)
    files = [
        ExportFile("qwen_ocr_jsonl", str(jsonl_path), lines, sha256_file(jsonl_path)),
        ExportFile("coco", str(coco_path), int(coco_counts.get("annotations", 0)), sha256_file(coco_path)),
    ]
    atomic_write_text(
        out_dir / "manifest.json",
        json.dumps({"images": len(refs), "files": [dataclasses.asdict(f) for f in files]}, indent=2),
    )
    return files
