"""Stage 2, frames: images, PDF pages and sampled video frames with exact timestamps."""

import time

import pandas as pd
from dagster import AssetCheckResult, AssetExecutionContext, Config, asset, asset_check
from pydantic import Field

from assets._gates import gate_result
from assets._metadata import manifest_metadata, markdown_table
from assets.partitions import batches
from qwen_dataset.ingest.frames import FrameExtractionError, FrameOptions, extract_frames
from qwen_dataset.quality.validation import validate_frames
from qwen_dataset.records import FrameRecord, UploadRecord, UploadStatus, from_frame, to_frame
from resources.storage import StorageResource

FRAMES_CODE_VERSION = "1"


class FramesConfig(Config):
    pdf_dpi: int = Field(default=FrameOptions.pdf_dpi, description="Render resolution of PDF pages.")
    video_fps: float = Field(default=FrameOptions.video_fps, description="Video sampling rate (frames per second).")
    low_light_threshold: float = Field(
        default=FrameOptions.low_light_threshold, description="Mean luma (0-255) under which a frame is low-light."
    )


@asset(
    partitions_def=batches,
    group_name="ingest",
    kinds={"python", "parquet"},
    owners=["team:data-engineering"],
    code_version=FRAMES_CODE_VERSION,
    description=(
        "One row per picture: images (EXIF-upright RGB), PDF pages at a set DPI, video frames sampled at a set "
        "rate with presentation timestamps; low-light frames tagged and given a CLAHE-enhanced copy."
    ),
)
def frames(
    context: AssetExecutionContext, config: FramesConfig, raw_uploads: pd.DataFrame, storage: StorageResource
) -> pd.DataFrame:
    blobs = storage.layout().blobs
    options = FrameOptions(
        pdf_dpi=config.pdf_dpi, video_fps=config.video_fps, low_light_threshold=config.low_light_threshold
    )
    uploads = from_frame(raw_uploads[raw_uploads["status"] == UploadStatus.OK], UploadRecord)
    records: list[FrameRecord] = []
    failures: list[dict[str, str]] = []
    started = time.perf_counter()
    for upload in uploads:
        try:
            for record in extract_frames(upload, blobs, options):
                records.append(record)
        except FrameExtractionError as error:
            # Frames decoded before the error are kept; the failure is reported, not swallowed.
            failures.append({"upload": upload.original_name, "upload_id": upload.upload_id[:16], "error": str(error)})
            context.log.error(f"frame extraction failed for {upload.original_name}: {error}")
    elapsed = time.perf_counter() - started
    manifest = to_frame(records, FrameRecord)
    by_kind = manifest["kind"].value_counts().to_dict() if len(manifest) else {}
    context.add_output_metadata(
        {
            **manifest_metadata(manifest, FrameRecord),
            "frames": len(manifest),
            "images": int(by_kind.get("image", 0)),
            "pdf_pages": int(by_kind.get("page", 0)),
            "video_frames": int(by_kind.get("video_frame", 0)),
            "low_light": int(manifest["low_light"].sum()) if len(manifest) else 0,
            "extraction_failures": len(failures),
            "failures": markdown_table(failures),
            "frames_per_second": round(len(manifest) / elapsed, 2) if elapsed > 0 else 0.0,
        }
    )
    return manifest


@asset_check(
    asset=frames,
    blocking=True,
    partitions_def=batches,
    description=(
        "Great Expectations: unique ids, positive sizes, a picture for every frame, video timestamps increasing "
        "and inside the video."
    ),
)
def frames_gate(frames: pd.DataFrame) -> AssetCheckResult:
    return gate_result(validate_frames(frames))
