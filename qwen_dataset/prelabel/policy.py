"""Which frames a run pre-annotates, and what it keeps from the run before (the rerun policy).

A rerun of ``ai_annotations`` keeps, for frames whose picture did not change:

* of the tasks it runs, the good rows of the same backend version: failures are retried, and a
  new engine, model or template version annotates everything again;
* of the tasks it does not run, every earlier row, good or failed, so nothing recorded disappears.

A frame id survives a re-render, so "did not change" is decided on the picture: each run records
``frame_id -> blob_uri`` beside the manifest (:func:`pictures_path`), and a frame whose picture is
another blob now is annotated again. ``reannotate_all`` ignores the previous run altogether.

A ``video_event`` record is filed under the first sampled frame of its video
(:func:`qwen_dataset.prelabel.video_events.anchor_frames`): a video is done when that frame is,
and otherwise the whole video is sent again.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import pandas as pd

from qwen_dataset.prelabel.base import FrameInput, PrelabelBackend, outcomes_to_records
from qwen_dataset.prelabel.video_events import anchor_frames
from qwen_dataset.records import AnnotationRecord, AnnotationStatus, Task, to_frame
from qwen_dataset.store.blobs import BlobStore
from qwen_dataset.store.layout import StorageLayout
from qwen_dataset.store.paths import StoragePath


@dataclasses.dataclass(frozen=True)
class AnnotationRun:
    """What one run produced: the whole manifest (kept rows included), the pictures it saw, figures."""

    manifest: pd.DataFrame
    pictures: dict[str, str]  # frame_id -> blob_uri, to record for the next run
    figures: dict[str, float]  # per task: annotated, reused, frames_per_second


def pictures_path(layout: StorageLayout, batch: str) -> StoragePath:
    """Where a run records which picture each frame had when it was annotated."""
    return layout.manifest("ai_annotations", batch).with_suffix(".pictures.json")


def frame_inputs(frames: pd.DataFrame, blobs: BlobStore) -> list[FrameInput]:
    """What the backend sees of each frame: low-light frames are sent as their enhanced copy."""
    inputs = []
    for row in frames.itertuples(index=False):
        uri = row.enhanced_uri or row.blob_uri
        inputs.append(
            FrameInput(
                frame_id=row.frame_id,
                upload_id=row.upload_id,
                batch=row.batch,
                width=int(row.width),
                height=int(row.height),
                image_path=blobs.local_path(uri),
                t=None if pd.isna(row.t) else float(row.t),
                duration=_seconds(getattr(row, "duration", None)),
            )
        )
    return inputs


def _seconds(value: object) -> float | None:
    return None if value is None or pd.isna(value) else float(value)  # type: ignore[arg-type]


def check_tasks(backend: PrelabelBackend, tasks: list[str]) -> None:
    """Refuse tasks the backend cannot run, saying what it runs and how to switch."""
    unknown = sorted(set(tasks) - set(backend.tasks))
    if unknown:
        raise ValueError(
            f"The prelabel backend {backend.author} cannot run task(s) {unknown}; it supports "
            f"{list(backend.tasks)}. Pick other tasks in the run config or switch QWEN_PRELABEL_BACKEND."
        )


def unchanged_frames(pictures: dict[str, str], seen: dict[str, str]) -> set[str]:
    """Frames whose picture is the one they had at the previous run."""
    return {frame_id for frame_id, uri in pictures.items() if seen.get(frame_id) == uri}


def reusable_rows(
    previous: pd.DataFrame | None, backend: PrelabelBackend, unchanged: set[str], tasks: list[str]
) -> pd.DataFrame:
    """Earlier rows a rerun keeps (see the module docstring)."""
    if previous is None or not len(previous):
        return to_frame([], AnnotationRecord)
    same_backend_result = (
        (previous["status"] == AnnotationStatus.OK)
        & (previous["author"] == backend.author)
        & (previous["template_version"] == backend.version)
    )
    keep = previous["frame_id"].isin(unchanged) & (same_backend_result | ~previous["task"].isin(tasks))
    return previous[keep]


def task_inputs(
    backend: PrelabelBackend, task: str, inputs: list[FrameInput], kinds: dict[str, str]
) -> list[FrameInput]:
    """The frames a task is meant for (e.g. ``video_event``: sampled video frames only)."""
    applies_to = set(backend.applies_to(task))
    return [frame for frame in inputs if kinds[frame.frame_id] in applies_to]


def pending(task: str, inputs: list[FrameInput], done: set[str]) -> tuple[list[FrameInput], list[FrameInput]]:
    """(frames to send, frames that must get a record) for the part of a task not annotated yet."""
    if task != Task.VIDEO_EVENT:
        todo = [frame for frame in inputs if frame.frame_id not in done]
        return todo, todo
    anchors = {anchor.upload_id: anchor.frame_id for anchor in anchor_frames(inputs)}
    todo = [frame for frame in inputs if anchors[frame.upload_id] not in done]
    return todo, anchor_frames(todo)


def annotate_frames(
    frames: pd.DataFrame,
    blobs: BlobStore,
    backend: PrelabelBackend,
    tasks: list[str],
    previous: pd.DataFrame | None = None,
    seen_pictures: dict[str, str] | None = None,
    log: Callable[[str], None] = lambda _message: None,
) -> AnnotationRun:
    """Annotate the frames for ``tasks``, reusing what ``previous`` holds that is still good.

    ``previous`` and ``seen_pictures`` are the last run's manifest and pictures (None on a first run
    or with ``reannotate_all``). Every frame of each task ends with exactly one row, ok or failed.
    """
    check_tasks(backend, tasks)
    inputs = frame_inputs(frames, blobs)
    kinds = dict(zip(frames["frame_id"], frames["kind"]))
    pictures = dict(zip(frames["frame_id"], frames["blob_uri"]))
    unchanged = unchanged_frames(pictures, seen_pictures or {}) if previous is not None else set()
    kept = reusable_rows(previous, backend, unchanged, tasks)
    parts = [kept]
    figures: dict[str, float] = {}
    checked = False
    for task in tasks:
        done = set(kept.loc[kept["task"] == task, "frame_id"])
        todo, expected = pending(task, task_inputs(backend, task, inputs, kinds), done)
        if todo and not checked:
            backend.check_ready()  # once per run, before the first request: raises BackendNotReady
            checked = True
        started = time.perf_counter()
        records = outcomes_to_records(backend.annotate(todo, task), expected, task, backend.author, backend.version)
        elapsed = time.perf_counter() - started
        parts.append(to_frame(records, AnnotationRecord))
        figures[f"{task}_annotated"] = len(expected)
        figures[f"{task}_reused"] = len(done)
        figures[f"{task}_frames_per_second"] = round(len(todo) / elapsed, 3) if todo and elapsed > 0 else 0.0
        log(f"{task}: annotated {len(todo)} frames in {elapsed:.1f}s, reused {len(done)}")
    non_empty = [part for part in parts if len(part)]
    manifest = pd.concat(non_empty, ignore_index=True) if non_empty else to_frame([], AnnotationRecord)
    manifest = manifest.sort_values(["task", "frame_id"]).reset_index(drop=True)
    return AnnotationRun(manifest, pictures, figures)
