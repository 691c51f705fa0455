"""Stage 3, ai_annotations: pre-annotation by the configured backend (RapidOCR or Qwen3-VL/vLLM)."""

import json
import time

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetIn,
    AssetsDefinition,
    Config,
    Failure,
    asset,
    asset_check,
)
from pydantic import Field

from assets._gates import gate_result
from assets._metadata import manifest_metadata
from assets.partitions import batches
from qwen_dataset.prelabel.base import FrameInput, PrelabelBackend, outcomes_to_records
from qwen_dataset.prelabel.video_events import anchor_frames
from qwen_dataset.quality.validation import validate_annotations
from qwen_dataset.records import AnnotationRecord, AnnotationStatus, Task, regions_table, to_frame
from qwen_dataset.store.blobs import BlobStore
from qwen_dataset.store.layout import StorageLayout
from qwen_dataset.store.paths import StoragePath, atomic_write_text, read_parquet
from resources.prelabel import PrelabelResource
from resources.storage import StorageResource

ANNOTATE_CODE_VERSION = "1"


class AnnotateConfig(Config):
    tasks: list[str] = Field(default=["ocr"], description="Task templates to run on this batch.")
    gui_instruction: str = Field(
        default="", description="Instruction for gui_action pre-annotation (empty: the template's default)."
    )
    reannotate_all: bool = Field(
        default=False,
        description="Annotate every frame again; by default a rerun keeps good results and retries only failures.",
    )


def frame_inputs(frames: pd.DataFrame, layout: StorageLayout) -> list[FrameInput]:
    """What the backend sees: low-light frames are sent as their enhanced copy."""
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
                image_path=layout.blobs.local_path(uri),
                t=None if pd.isna(row.t) else float(row.t),
            )
        )
    return inputs


def reusable_rows(
    previous: pd.DataFrame | None, backend: PrelabelBackend, unchanged: set[str], tasks: list[str]
) -> pd.DataFrame:
    """Earlier rows a rerun keeps, for frames whose picture did not change.

    Of the tasks run now: the good results of the same backend version (failures are retried).
    Of other tasks: every row, good or failed, so nothing recorded earlier disappears.
    """
    if previous is None or not len(previous):
        return to_frame([], AnnotationRecord)
    same_backend_result = (
        (previous["status"] == AnnotationStatus.OK)
        & (previous["author"] == backend.author)
        & (previous["template_version"] == backend.version)
    )
    keep = previous["frame_id"].isin(unchanged) & (same_backend_result | ~previous["task"].isin(tasks))
    return previous[keep]


def pictures_path(layout: StorageLayout, batch: str) -> StoragePath:
    """Which picture each frame had when it was annotated (frame ids survive a re-render)."""
    return layout.manifest("ai_annotations", batch).with_suffix(".pictures.json")


def with_run_options(backend: PrelabelBackend, config: AnnotateConfig, layout: StorageLayout) -> PrelabelBackend:
    """Per-run options for backends that take them (the vLLM one: GUI instruction, video files)."""
    if not hasattr(backend, "with_run_options"):
        return backend
    # An upload's id is the sha256 of its content, so its blob is found without the manifest.
    return backend.with_run_options(
        instruction=config.gui_instruction or None,
        video_path_for=lambda upload_id: layout.blobs.local_path(BlobStore.uri_for(upload_id)),
    )


def task_inputs(
    backend: PrelabelBackend, task: str, inputs: list[FrameInput], kinds: dict[str, str]
) -> list[FrameInput]:
    """The frames a task's template is meant for (e.g. video_event: sampled video frames only)."""
    applies_to = backend.applies_to(task) if hasattr(backend, "applies_to") else None
    return [i for i in inputs if applies_to is None or kinds[i.frame_id] in applies_to]


def pending(task: str, inputs: list[FrameInput], done: set[str]) -> tuple[list[FrameInput], list[FrameInput]]:
    """(frames to send, frames that must get a record) for the not yet annotated part of a task.

    A video_event record is filed under the first sampled frame of its video, so a video is done
    when that frame is, and the whole video is sent again otherwise.
    """
    if task != Task.VIDEO_EVENT:
        todo = [i for i in inputs if i.frame_id not in done]
        return todo, todo
    anchors = {anchor.upload_id: anchor.frame_id for anchor in anchor_frames(inputs)}
    todo = [i for i in inputs if anchors[i.upload_id] not in done]
    return todo, anchor_frames(todo)


def annotate_batch(
    context: AssetExecutionContext,
    frames: pd.DataFrame,
    layout: StorageLayout,
    backend: PrelabelBackend,
    config: AnnotateConfig,
) -> pd.DataFrame:
    unknown = sorted(set(config.tasks) - set(backend.tasks))
    if unknown:
        raise Failure(
            description=(
                f"The prelabel backend {backend.author} cannot run task(s) {unknown}; it supports "
                f"{list(backend.tasks)}. Pick other tasks in the run config or switch QWEN_PRELABEL_BACKEND."
            )
        )
    previous_path = layout.manifest("ai_annotations", context.partition_key)
    previous = None if config.reannotate_all or not previous_path.exists() else read_parquet(previous_path)
    inputs = frame_inputs(frames, layout)
    kinds = dict(zip(frames["frame_id"], frames["kind"]))
    pictures = dict(zip(frames["frame_id"], frames["blob_uri"]))
    seen_path = pictures_path(layout, context.partition_key)
    seen = json.loads(seen_path.read_text()) if previous is not None and seen_path.exists() else {}
    unchanged = {frame_id for frame_id, uri in pictures.items() if seen.get(frame_id) == uri}
    kept = reusable_rows(previous, backend, unchanged, config.tasks)
    parts = [kept]
    figures: dict[str, float] = {}
    for task in config.tasks:
        done = set(kept.loc[kept["task"] == task, "frame_id"])
        todo, expected = pending(task, task_inputs(backend, task, inputs, kinds), done)
        started = time.perf_counter()
        records = outcomes_to_records(backend.annotate(todo, task), expected, task, backend.author, backend.version)
        elapsed = time.perf_counter() - started
        parts.append(to_frame(records, AnnotationRecord))
        figures[f"{task}_annotated"] = len(expected)
        figures[f"{task}_reused"] = len(done)
        figures[f"{task}_frames_per_second"] = round(len(todo) / elapsed, 3) if todo and elapsed > 0 else 0.0
        context.log.info(f"{task}: annotated {len(todo)} frames in {elapsed:.1f}s, reused {len(done)}")
    non_empty = [part for part in parts if len(part)]
    manifest = pd.concat(non_empty, ignore_index=True) if non_empty else to_frame([], AnnotationRecord)
    manifest = manifest.sort_values(["task", "frame_id"]).reset_index(drop=True)
    failed = manifest[manifest["status"] == AnnotationStatus.FAILED]
    for row in failed.head(20).itertuples(index=False):
        context.log.warning(f"prelabel failed for {row.frame_id} ({row.task}): {row.error}")
    context.add_output_metadata(
        {
            **manifest_metadata(manifest, AnnotationRecord),
            "backend": backend.author,
            "backend_version": backend.version,
            "annotations_ok": int((manifest["status"] == AnnotationStatus.OK).sum()),
            "annotations_failed": len(failed),
            "regions": len(regions_table(manifest, frames)),
            **figures,
        }
    )
    atomic_write_text(seen_path, json.dumps(pictures, sort_keys=True))
    return manifest


def build_ai_annotations(prelabel_version: str) -> AssetsDefinition:
    """The asset, with the backend's version in its code version (a new model marks it stale)."""

    @asset(
        name="ai_annotations",
        partitions_def=batches,
        group_name="annotate",
        kinds={"python", "parquet"},
        owners=["team:ml"],
        code_version=f"{ANNOTATE_CODE_VERSION}:{prelabel_version}",
        pool="prelabel",
        description=(
            "Pre-annotations of every frame by the configured prelabel backend; a frame the backend "
            "could not annotate gets a failed row with the reason. Reruns retry only failures."
        ),
    )
    def ai_annotations(
        context: AssetExecutionContext,
        config: AnnotateConfig,
        frames: pd.DataFrame,
        storage: StorageResource,
        prelabel: PrelabelResource,
    ) -> pd.DataFrame:
        layout = storage.layout()
        backend = with_run_options(prelabel.backend(), config, layout)
        return annotate_batch(context, frames, layout, backend, config)

    return ai_annotations


@asset_check(
    asset="ai_annotations",
    blocking=True,
    partitions_def=batches,
    additional_ins={"frames": AssetIn("frames")},
    description="Great Expectations: unique ids, every box inside its frame with x1<x2, y1<y2, confidence in [0, 1].",
)
def ai_annotations_gate(ai_annotations: pd.DataFrame, frames: pd.DataFrame) -> AssetCheckResult:
    return gate_result(validate_annotations(ai_annotations, frames))
