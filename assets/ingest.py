"""Stage 1, raw_uploads: every inbox file gets a content id, a media type and a status."""

import pandas as pd
from dagster import AssetCheckResult, AssetExecutionContext, Config, MetadataValue, asset, asset_check
from pydantic import Field

from assets._gates import gate_result
from assets._metadata import manifest_metadata, markdown_table
from assets.partitions import batches
from qwen_dataset.ingest.uploads import IngestLimits, ingest_batch, summarize
from qwen_dataset.quality.validation import validate_uploads
from qwen_dataset.records import UploadRecord, to_frame
from resources.storage import StorageResource

INGEST_CODE_VERSION = "1"


class IngestConfig(Config):
    max_bytes: int = Field(default=IngestLimits.max_bytes, description="Files larger than this are quarantined.")
    max_image_pixels: int = Field(
        default=IngestLimits.max_image_pixels, description="Decompression-bomb limit for images and PDF pages."
    )
    max_pdf_pages: int = Field(default=IngestLimits.max_pdf_pages)
    max_video_seconds: float = Field(default=IngestLimits.max_video_seconds)


@asset(
    partitions_def=batches,
    group_name="ingest",
    kinds={"python", "parquet"},
    owners=["team:data-engineering"],
    code_version=INGEST_CODE_VERSION,
    description=(
        "Every file of `inbox/<batch>/` exactly once: sha256 content id, media type by magic bytes, "
        "sanitized name, stored in the content-addressed blob store; bad files quarantined with a reason."
    ),
)
def raw_uploads(context: AssetExecutionContext, config: IngestConfig, storage: StorageResource) -> pd.DataFrame:
    layout = storage.layout()
    batch = context.partition_key
    inbox_dir = layout.batch_inbox(batch)
    if not inbox_dir.is_dir():
        raise FileNotFoundError(
            f"No inbox folder for batch {batch!r} at {inbox_dir}: copy the files there (or use the upload API) "
            f"and materialize again."
        )
    limits = IngestLimits(
        max_bytes=config.max_bytes,
        max_image_pixels=config.max_image_pixels,
        max_pdf_pages=config.max_pdf_pages,
        max_video_seconds=config.max_video_seconds,
    )
    # Ingest walks a folder on disk; an object-store inbox is copied down first.
    with layout.local_copy(inbox_dir) as local_inbox:
        records = ingest_batch(local_inbox, batch, layout.blobs, limits)
    summary = summarize(records)
    manifest = to_frame(records, UploadRecord)
    quarantined = [{"file": name, "reason": reason} for name, reason in summary["quarantined"]]
    for row in quarantined:
        context.log.warning(f"quarantined {row['file']}: {row['reason']}")
    context.add_output_metadata(
        {
            **manifest_metadata(manifest, UploadRecord),
            "files": len(records),
            "ok": summary["by_status"].get("ok", 0),
            "duplicates": summary["by_status"].get("duplicate", 0),
            "quarantined": summary["by_status"].get("quarantined", 0),
            "bytes": int(manifest["bytes"].sum()) if len(manifest) else 0,
            "by_media_type": MetadataValue.json(summary["by_media_type"]),
            "quarantine_reasons": markdown_table(quarantined),
        }
    )
    return manifest


@asset_check(
    asset=raw_uploads,
    blocking=True,
    partitions_def=batches,
    description="Great Expectations: known statuses and types, distinct ok content ids, a reason for every rejected file.",
)
def raw_uploads_gate(raw_uploads: pd.DataFrame) -> AssetCheckResult:
    return gate_result(validate_uploads(raw_uploads))
