"""Writing a dataset folder: the frames as files plus every format, each file atomic.

A batch export (``exports/<batch>/``) and a release (``releases/<version>/``) hold the same
formats, written by :func:`write_dataset_formats` for every task present:

    images/<frame_id>.png|jpg        hard links to the blobs (copies across file systems and on object storage)
    videos/<upload_id>.mp4|...       the videos of video_event annotations, linked the same way (batch exports)
    qwen_<task>.jsonl                Qwen-VL fine-tune format (qwen-vl-finetune)
    messages_<task>.jsonl            messages/images layout (LLaMA-Factory, ms-swift, TRL)
    coco_<task>.json                 COCO detection (tasks with boxes)
    label_studio_<task>.json         Label Studio import tasks with predictions
    actions.dsl                      GUI action sequences in the Action DSL (gui_action)
    annotations.csv                  one row per region / element / action / event
    manifest.json                    what was written, with row counts and sha256
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from qwen_dataset.exporters.action_dsl import write as write_dsl
from qwen_dataset.exporters.coco import export_coco
from qwen_dataset.exporters.csv_export import export_csv
from qwen_dataset.exporters.label_studio.export import export_label_studio
from qwen_dataset.exporters.messages import export_messages_jsonl
from qwen_dataset.exporters.qwen_jsonl import export_qwen_jsonl
from qwen_dataset.exporters.stream import final_annotations
from qwen_dataset.ingest.uploads import HEAD_BYTES, video_extension
from qwen_dataset.payloads import BOX_TASKS
from qwen_dataset.records import AnnotationStatus, Task
from qwen_dataset.release.assemble import ReleaseStaging
from qwen_dataset.store.blobs import BlobStore
from qwen_dataset.store.paths import atomic_write_text, sha256_file

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
    if target.exists() and os.path.samefile(blob, target):
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
        blob = blobs.local_path(row.blob_uri)
        relative = f"images/{row.frame_id}{_extension(blob)}"
        _place(blob, out_dir / relative)
        refs[row.frame_id] = relative
    return refs


def link_videos(annotations: pd.DataFrame, blobs: BlobStore, out_dir: Path) -> dict[str, str]:
    """Put the video of each ``video_event`` annotation under ``videos/``; returns upload_id -> path
    relative to out_dir. A video's file is its upload's blob (content-addressed by the upload id)."""
    refs: dict[str, str] = {}
    uploads = final_annotations(annotations, Task.VIDEO_EVENT)["upload_id"] if len(annotations) else []
    for upload_id in sorted(set(uploads)):
        blob = blobs.local_path(BlobStore.uri_for(upload_id))
        with blob.open("rb") as handle:
            extension = video_extension(handle.read(HEAD_BYTES))
        relative = f"videos/{upload_id}{extension}"
        _place(blob, out_dir / relative)
        refs[upload_id] = relative
    return refs


def _file(format_name: str, path: Path, records: int) -> ExportFile:
    return ExportFile(format_name, str(path), int(records), sha256_file(path))


def write_action_dsl(annotations: pd.DataFrame, out_path: Path, image_ref: Callable[[str], str]) -> int:
    """Every final GUI action sequence in the Action DSL, one block per frame after a comment line."""
    blocks = []
    for row in final_annotations(annotations, Task.GUI_ACTION).itertuples(index=False):
        payload = json.loads(row.payload)
        header = f"// frame {row.frame_id} image {image_ref(row.frame_id)}"
        instruction = " ".join(str(payload.get("instruction", "")).split())
        blocks.append(f"{header}\n// instruction {instruction}\n{write_dsl(payload.get('actions', []))}")
    atomic_write_text(out_path, "\n".join(blocks))
    return len(blocks)


def write_dataset_formats(
    annotations: pd.DataFrame,
    frames: pd.DataFrame,
    out_dir: Path,
    image_ref: Callable[[str], str],
    video_ref: Callable[[str], str] | None = None,
) -> list[ExportFile]:
    """Write every format of every task present in ``annotations`` into ``out_dir``.

    ``video_ref(upload_id)`` is where a Label Studio video task loads its video from; by default
    the video's blob path under the storage root (``blobs/sha256/...``, as the workbench's own
    Label Studio export gives it after its configurable prefix).
    """
    video_url = video_ref or BlobStore.uri_for
    ok = annotations[annotations["status"] == AnnotationStatus.OK]
    tasks = [task for task in Task if (ok["task"] == task).any()]
    files: list[ExportFile] = []
    for task in tasks:
        name = task.value
        lines = export_qwen_jsonl(annotations, frames, out_dir / f"qwen_{name}.jsonl", image_ref, task=name)
        files.append(_file(f"qwen_{name}_jsonl", out_dir / f"qwen_{name}.jsonl", lines))
        lines = export_messages_jsonl(annotations, frames, out_dir / f"messages_{name}.jsonl", image_ref, task=name)
        files.append(_file(f"messages_{name}_jsonl", out_dir / f"messages_{name}.jsonl", lines))
        if task in BOX_TASKS:
            counts = export_coco(annotations, frames, out_dir / f"coco_{name}.json", image_ref, task=name)
            files.append(_file(f"coco_{name}", out_dir / f"coco_{name}.json", counts.get("annotations", 0)))
        count = export_label_studio(
            annotations, frames, out_dir / f"label_studio_{name}.json", image_ref, task=name, video_url=video_url
        )
        files.append(_file(f"label_studio_{name}", out_dir / f"label_studio_{name}.json", count))
    if Task.GUI_ACTION in tasks:
        files.append(
            _file(
                "action_dsl", out_dir / "actions.dsl", write_action_dsl(annotations, out_dir / "actions.dsl", image_ref)
            )
        )
    rows = export_csv(annotations, frames, out_dir / "annotations.csv", image_ref)
    files.append(_file("csv", out_dir / "annotations.csv", rows))
    return files


def write_batch_exports(
    annotations: pd.DataFrame, frames: pd.DataFrame, blobs: BlobStore, out_dir: Path
) -> list[ExportFile]:
    """Write every format for one batch into ``out_dir`` and describe what was written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    refs = link_images(frames, blobs, out_dir)
    videos = link_videos(annotations, blobs, out_dir)
    files = write_dataset_formats(annotations, frames, out_dir, refs.__getitem__, videos.__getitem__)
    atomic_write_text(
        out_dir / "manifest.json",
        # Paths relative to the export folder: the folder may be moved, or uploaded to object storage.
        json.dumps(
            {
                "images": len(refs),
                "files": [
                    {**dataclasses.asdict(f), "path": Path(f.path).relative_to(out_dir).as_posix()} for f in files
                ],
            },
            indent=2,
        ),
    )
    linked = set(refs.values()) | set(videos.values())
    remove_stale(out_dir, {Path(f.path).name for f in files} | {"manifest.json"}, linked)
    return files


def remove_stale(out_dir: Path, names: set[str], linked: set[str]) -> None:
    """Drop what an earlier export left that this one did not write (a task gone, a frame gone)."""
    for path in out_dir.iterdir():
        if path.is_file() and path.name not in names:
            path.unlink()
    for folder in ("images", "videos"):
        for path in (out_dir / folder).glob("*"):
            if f"{folder}/{path.name}" not in linked:
                path.unlink()


def write_release_formats(staging: ReleaseStaging) -> None:
    """The release's formats, written into its staging folder before it is sealed."""
    write_dataset_formats(staging.annotations, staging.frames, staging.directory, staging.image_ref)
