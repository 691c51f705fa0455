"""Writing a dataset folder: the frames as files plus every format, each file atomic.

A batch export (``exports/<batch>/``) and a release (``releases/<version>/``) hold the same
formats, written by :func:`write_dataset_formats` for every task present:

    images/<frame_id>.png|jpg          hard links to the blobs (copies across file systems and on object storage)
    videos/<upload_id>.mp4|mov|webm    the videos of video_event annotations (Label Studio plays them)
    qwen_<task>.jsonl                  Qwen3-VL qwen-vl-finetune conversations
    messages_<task>.jsonl              LLaMA-Factory sharegpt messages (string content, <image> tags)
    dataset_info.json                  LLaMA-Factory's entries for the messages files
    trl_<task>.parquet                 TRL / Hugging Face datasets: typed messages, images embedded
    annotations/instances_<task>.json  COCO detection (tasks with boxes; file_name relative to images/)
    label_studio_<task>.json           Label Studio import tasks with predictions, media as URLs
    label_studio_<task>.xml            the Label Studio labeling config of those tasks
    actions.dsl                        GUI action sequences in the Action DSL (gui_action)
    annotations.csv                    one row per region / element / action / event
    manifest.json                      what was written, with row counts and sha256
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import IO, Any

import pandas as pd

from qwen_dataset.exporters.action_dsl import write as write_dsl
from qwen_dataset.exporters.coco import CocoWriter
from qwen_dataset.exporters.csv_export import CsvWriter
from qwen_dataset.exporters.label_studio.config import labeling_config
from qwen_dataset.exporters.label_studio.export import LabelStudioWriter
from qwen_dataset.exporters.label_studio.media import media_urls
from qwen_dataset.exporters.messages import llamafactory_dataset_info, to_messages
from qwen_dataset.exporters.qwen_jsonl import JsonlWriter, SampleBuilder
from qwen_dataset.exporters.stream import (
    AnnotationStream,
    BoxChecker,
    chosen_rows,
    column_chunks,
    final_annotations,
    gc_paused,
    loads,
)
from qwen_dataset.exporters.trl import TrlWriter
from qwen_dataset.ingest.uploads import HEAD_BYTES, video_extension
from qwen_dataset.payloads import BOX_TASKS
from qwen_dataset.records import AnnotationStatus, Task
from qwen_dataset.release.assemble import ReleaseStaging
from qwen_dataset.store.blobs import BlobStore
from qwen_dataset.store.paths import StoragePath, atomic_write_text, atomic_writer, sha256_file

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


def event_videos(annotations: pd.DataFrame) -> list[str]:
    """Upload ids of the videos whose final video_event annotations a dataset holds, in order."""
    return sorted(set(final_annotations(annotations, Task.VIDEO_EVENT)["upload_id"]))


def link_videos(upload_ids: Iterable[str], blobs: BlobStore, out_dir: Path) -> dict[str, str]:
    """Put each video (its upload blob: the upload id is its sha256) under ``videos/``;
    returns upload_id -> path relative to out_dir."""
    refs: dict[str, str] = {}
    for upload_id in upload_ids:
        uri = blobs.uri_for(upload_id)
        try:
            blob = blobs.local_path(uri)
        except FileNotFoundError:  # a URL root without the object
            blob = None
        if blob is None or not blob.is_file():
            raise ValueError(
                f"the video {upload_id} of a video_event annotation is not in the blob store ({uri}); "
                "ingest the video with its batch (raw_uploads) before exporting its events"
            )
        with blob.open("rb") as handle:
            extension = video_extension(handle.read(HEAD_BYTES))
        relative = f"videos/{upload_id}{extension}"
        _place(blob, out_dir / relative)
        refs[upload_id] = relative
    return refs


def _file(format_name: str, path: Path, records: int) -> ExportFile:
    return ExportFile(format_name, str(path), int(records), sha256_file(path))


class ActionDslWriter:
    """Streams GUI action sequences in the Action DSL, one block per frame after a comment line."""

    def __init__(self, handle: IO[bytes], image_ref: Callable[[str], str]) -> None:
        self._handle, self._image_ref = handle, image_ref
        self.count = 0

    def add(self, frame_id: str, payload: dict[str, Any]) -> None:
        header = f"// frame {frame_id} image {self._image_ref(frame_id)}"
        instruction = " ".join(str(payload.get("instruction", "")).split())
        block = f"{header}\n// instruction {instruction}\n{write_dsl(payload.get('actions', []))}"
        self._handle.write(("\n" if self.count else "").encode() + block.encode("utf-8"))
        self.count += 1


@gc_paused
def write_action_dsl(annotations: pd.DataFrame, out_path: Path, image_ref: Callable[[str], str]) -> int:
    """Every final GUI action sequence in the Action DSL, one block per frame after a comment line."""
    rows = chosen_rows(annotations, Task.GUI_ACTION)
    with atomic_writer(out_path) as handle:
        writer = ActionDslWriter(handle, image_ref)
        for frame_ids, payloads in column_chunks(annotations, rows, ("frame_id", "payload")):
            for frame_id, payload in zip(frame_ids, payloads, strict=True):
                writer.add(frame_id, loads(payload))
    return writer.count


@dataclasses.dataclass(frozen=True)
class DatasetMedia:
    """Where a dataset folder's media are: paths relative to the folder, and the URLs Label Studio loads.

    ``media_url(path)`` turns a path relative to the folder (``images/f.png``) into the URL a Label
    Studio server loads it from (see :mod:`qwen_dataset.exporters.label_studio.media`).
    """

    images: dict[str, str]  # frame_id -> images/<frame_id>.<ext>
    videos: dict[str, str]  # upload_id -> videos/<upload_id>.<ext>
    media_url: Callable[[str], str]

    def image_ref(self, frame_id: str) -> str:
        return self.images[frame_id]

    def image_name(self, frame_id: str) -> str:
        """The picture's name inside ``images/`` (what COCO's ``file_name`` holds)."""
        return PurePosixPath(self.images[frame_id]).name

    def image_url(self, frame_id: str) -> str:
        return self.media_url(self.images[frame_id])

    def video_url(self, upload_id: str) -> str:
        return self.media_url(self.videos[upload_id])


def write_task_formats(
    task: Task,
    annotations: pd.DataFrame,
    frames: pd.DataFrame,
    out_dir: Path,
    media: DatasetMedia,
    csv_rows: CsvWriter | None = None,
) -> list[ExportFile]:
    """Every per-task file of ``task``: the three trainer layouts, COCO, Label Studio tasks and
    config, and for ``gui_action`` the Action DSL; ``csv_rows`` gets the task's CSV rows.

    One pass: each payload is parsed, checked and converted once, a chunk at a time, and every
    writer takes its part; a sample is built once for the three trainer layouts. Files are
    renamed into place only when all of them are complete.
    """
    name = task.value
    stream = AnnotationStream(annotations, frames, name)
    builder = SampleBuilder(name, frames, media.image_ref)
    checker = BoxChecker()
    paths = {
        f"qwen_{name}_jsonl": out_dir / f"qwen_{name}.jsonl",
        f"messages_{name}_jsonl": out_dir / f"messages_{name}.jsonl",
        f"trl_{name}_parquet": out_dir / f"trl_{name}.parquet",
        f"coco_{name}": out_dir / "annotations" / f"instances_{name}.json",
        f"label_studio_{name}": out_dir / f"label_studio_{name}.json",
        "action_dsl": out_dir / "actions.dsl",
    }
    if task not in BOX_TASKS:
        del paths[f"coco_{name}"]
    if task != Task.GUI_ACTION:
        del paths["action_dsl"]
    with contextlib.ExitStack() as stack:
        handles = {key: stack.enter_context(atomic_writer(path)) for key, path in paths.items()}
        qwen = JsonlWriter(handles[f"qwen_{name}_jsonl"])
        messages = JsonlWriter(handles[f"messages_{name}_jsonl"])
        trl = stack.enter_context(TrlWriter(handles[f"trl_{name}_parquet"], out_dir))
        coco = CocoWriter(handles[f"coco_{name}"], name, stream, media.image_name) if f"coco_{name}" in paths else None
        label_studio = LabelStudioWriter(handles[f"label_studio_{name}"], media.image_url, video_url=media.video_url)
        dsl = ActionDslWriter(handles["action_dsl"], media.image_ref) if "action_dsl" in paths else None
        for annotation in stream.checked(checker):
            sample = builder.sample(annotation)
            qwen.add(sample)
            messages.add(to_messages(sample))
            trl.add(sample)
            if coco is not None:
                coco.add(annotation)
            label_studio.add(annotation)
            if dsl is not None:
                dsl.add(annotation.frame_id, annotation.payload)
            if csv_rows is not None:
                csv_rows.add(annotation, media.image_ref(annotation.frame_id))
        checker.raise_if_any()
        counts = {f"qwen_{name}_jsonl": qwen.count, f"messages_{name}_jsonl": messages.count}
        if coco is not None:
            counts[f"coco_{name}"] = coco.close()["annotations"]
        counts[f"label_studio_{name}"] = label_studio.close()
        if dsl is not None:
            counts["action_dsl"] = dsl.count
        stack.close()  # the TRL footer first, then every file renamed into place
        counts[f"trl_{name}_parquet"] = trl.count
    config = out_dir / f"label_studio_{name}.xml"
    atomic_write_text(config, labeling_config(name))
    order = [
        f"qwen_{name}_jsonl",
        f"messages_{name}_jsonl",
        f"trl_{name}_parquet",
        f"coco_{name}",
        f"label_studio_{name}",
    ]
    files = [_file(key, paths[key], counts[key]) for key in order if key in paths]
    files.append(_file(f"label_studio_{name}_config", config, 1))
    if "action_dsl" in paths:
        files.append(_file("action_dsl", paths["action_dsl"], counts["action_dsl"]))
    return files


@gc_paused
def write_dataset_formats(
    annotations: pd.DataFrame, frames: pd.DataFrame, out_dir: Path, media: DatasetMedia
) -> list[ExportFile]:
    """Write every format of every task present in ``annotations`` into ``out_dir``."""
    ok = annotations[annotations["status"] == AnnotationStatus.OK]
    tasks = [task for task in Task if (ok["task"] == task).any()]
    files: list[ExportFile] = []
    csv_path = out_dir / "annotations.csv"
    with atomic_writer(csv_path) as handle:
        csv_rows = CsvWriter(handle)
        for task in tasks:
            files.extend(write_task_formats(task, annotations, frames, out_dir, media, csv_rows))
        rows = csv_rows.close()
    dsl = [file for file in files if file.format == "action_dsl"]
    files = [file for file in files if file.format != "action_dsl"]
    if tasks:
        info = llamafactory_dataset_info({f"messages_{task.value}": f"messages_{task.value}.jsonl" for task in tasks})
        atomic_write_text(out_dir / "dataset_info.json", json.dumps(info, indent=2) + "\n")
        files.append(_file("llamafactory_dataset_info", out_dir / "dataset_info.json", len(info)))
    files.extend(dsl)
    files.append(_file("csv", csv_path, rows))
    return files


def write_batch_exports(
    annotations: pd.DataFrame,
    frames: pd.DataFrame,
    blobs: BlobStore,
    out_dir: Path,
    media_url: Callable[[str], str],
) -> list[ExportFile]:
    """Write every format for one batch into ``out_dir`` and describe what was written.

    ``media_url(path)`` is the URL Label Studio loads a file of the folder from, given its path
    relative to the folder (:func:`qwen_dataset.exporters.label_studio.media.media_urls` of the
    folder's final place: ``out_dir`` may be a staging folder).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    media = DatasetMedia(
        link_images(frames, blobs, out_dir), link_videos(event_videos(annotations), blobs, out_dir), media_url
    )
    files = write_dataset_formats(annotations, frames, out_dir, media)
    atomic_write_text(
        out_dir / "manifest.json",
        # Paths relative to the export folder: the folder may be moved, or uploaded to object storage.
        json.dumps(
            {
                "images": len(media.images),
                "videos": len(media.videos),
                "files": [
                    {**dataclasses.asdict(f), "path": Path(f.path).relative_to(out_dir).as_posix()} for f in files
                ],
            },
            indent=2,
        ),
    )
    written = {Path(f.path).relative_to(out_dir).as_posix() for f in files}
    remove_stale(out_dir, written | {"manifest.json"} | set(media.images.values()) | set(media.videos.values()))
    return files


def remove_stale(out_dir: Path, keep: set[str]) -> None:
    """Drop every file under ``out_dir`` that this export did not write (a task gone, a frame gone)."""
    for path in sorted(out_dir.rglob("*"), reverse=True):
        relative = path.relative_to(out_dir).as_posix()
        if path.is_file() and relative not in keep:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def release_formats_writer(
    blobs: BlobStore, root: StoragePath, label_studio_prefix: str | None = None
) -> Callable[[ReleaseStaging], None]:
    """``write_formats`` for :func:`qwen_dataset.release.assemble.assemble_release`: the release's
    formats and videos, written into its staging folder before it is sealed; Label Studio URLs point
    at ``releases/<version>/`` under ``root``."""

    def write(staging: ReleaseStaging) -> None:
        media = DatasetMedia(
            dict(staging.images),
            link_videos(event_videos(staging.annotations), blobs, staging.directory),
            media_urls(root, f"releases/{staging.version}", label_studio_prefix),
        )
        write_dataset_formats(staging.annotations, staging.frames, staging.directory, media)

    return write
