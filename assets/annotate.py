"""Stage 3, ai_annotations: pre-annotation by the configured backend (RapidOCR or Qwen3-VL/vLLM)."""

import json

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
from qwen_dataset.payloads import boxes_table
from qwen_dataset.prelabel.base import BackendNotReady, PrelabelBackend
from qwen_dataset.prelabel.instructions import InstructionFileError, instructions_by_upload
from qwen_dataset.quality.validation import validate_annotations
from qwen_dataset.records import AnnotationRecord, AnnotationStatus
from qwen_dataset.store.blobs import BlobStore
from qwen_dataset.store.layout import StorageLayout
from qwen_dataset.store.paths import atomic_write_text, read_parquet
from resources.prelabel import PrelabelResource
from resources.storage import StorageResource

ANNOTATE_CODE_VERSION = "1"


class AnnotateConfig(Config):
    tasks: list[str] = Field(default=["ocr"], description="Task templates to run on this batch.")
    gui_instruction: str = Field(
        default="",
        description=(
            "Instruction for gui_action pre-annotation (empty: the engine's default); a file named in "
            "inbox/<batch>.instructions.json gets its own instruction instead."
        ),
    )
    reannotate_all: bool = Field(
        default=False,
        description="Annotate every frame again; by default a rerun keeps good results and retries only failures.",
    )


def run_backend(backend: PrelabelBackend, config: AnnotateConfig, layout: StorageLayout, batch: str) -> PrelabelBackend:
    """The backend with this run's options: the GUI instruction, the batch's instruction file
    (``inbox/<batch>.instructions.json``) and the original video files (an upload's id is the
    sha256 of its content, so its blob is found without the manifest)."""
    try:
        instructions = instructions_by_upload(layout.inbox, batch)
    except InstructionFileError as error:
        raise Failure(description=str(error)) from error
    return backend.with_run_options(
        instruction=config.gui_instruction or None,
        video_path_for=lambda upload_id: layout.blobs.local_path(BlobStore.uri_for(upload_id)),
        instructions=instructions,
    )


def annotate_batch(
    context: AssetExecutionContext,
    frames: pd.DataFrame,
    layout: StorageLayout,
    backend: PrelabelBackend,
    config: AnnotateConfig,
) -> pd.DataFrame:
    from qwen_dataset.prelabel.policy import annotate_frames, pictures_path  # loads with the step

    batch = context.partition_key
    previous_path = layout.manifest("ai_annotations", batch)
    previous = None if config.reannotate_all or not previous_path.exists() else read_parquet(previous_path)
    seen_path = pictures_path(layout, batch)
    seen = json.loads(seen_path.read_text()) if previous is not None and seen_path.exists() else {}
    try:
        run = annotate_frames(frames, layout.blobs, backend, config.tasks, previous, seen, log=context.log.info)
    except (ValueError, BackendNotReady) as error:  # a task it cannot run, a server not there: what to fix
        raise Failure(description=str(error)) from error
    manifest = run.manifest
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
            "boxes": len(boxes_table(manifest)),
            **run.figures,
        }
    )
    atomic_write_text(seen_path, json.dumps(run.pictures, sort_keys=True))
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
        backend = run_backend(prelabel.backend(), config, layout, context.partition_key)
        return annotate_batch(context, frames, layout, backend, config)

    return ai_annotations


@asset_check(
    asset="ai_annotations",
    blocking=True,
    partitions_def=batches,
    additional_ins={"frames": AssetIn("frames")},
    description=(
        "Great Expectations: unique ids, every payload of its task's shape, every box inside its frame "
        "with x1<x2, y1<y2, confidence in [0, 1]."
    ),
)
def ai_annotations_gate(ai_annotations: pd.DataFrame, frames: pd.DataFrame) -> AssetCheckResult:
    return gate_result(validate_annotations(ai_annotations, frames))
