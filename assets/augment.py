"""augmented_dataset: bbox-aware augmentation of a batch's final annotations (albumentations)."""

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, Config, MetadataValue, asset
from pydantic import Field

from assets._metadata import markdown_table
from assets.partitions import batches
from qwen_dataset.records import (
    AUGMENTATION_LINEAGE_COLUMNS,
    AUGMENTATION_REJECTED_COLUMNS,
    AnnotationRecord,
    FrameRecord,
    to_frame,
)
from resources.storage import StorageResource

AUGMENT_CODE_VERSION = "1"


class AugmentConfig(Config):
    pipelines: list[str] = Field(
        default=["geometric", "color", "noise", "text_replace"],
        description="Registered augmentation pipelines to apply (built-ins, plugins or entry points).",
    )
    copies: int = Field(default=1, description="Draws per pipeline and frame (seeds seed .. seed+copies-1).")
    seed: int = Field(default=0, description="Base seed: the same seed gives the same pixels and boxes.")
    plugins: dict[str, str] = Field(
        default={}, description='Extra pipelines: name -> "package.module:factory", no project edit needed.'
    )


@asset(
    partitions_def=batches,
    group_name="export",
    kinds={"python", "parquet"},
    owners=["team:ml"],
    code_version=AUGMENT_CODE_VERSION,
    ins={"frames": AssetIn("frames")},
    # Only data that passed the quality gate is augmented.
    deps=["qc_report"],
    description=(
        "Augmented copies of the batch's frames with boxes, points and texts updated (geometric, colour, "
        "noise, text replacement); every sample keeps lineage to its source frame and annotation."
    ),
)
def augmented_dataset(
    context: AssetExecutionContext,
    config: AugmentConfig,
    human_corrections: pd.DataFrame,
    frames: pd.DataFrame,
    storage: StorageResource,
) -> dict[str, pd.DataFrame]:
    tables = augment(frames, human_corrections, storage, config) if len(frames) else nothing_to_augment()
    lineage, rejected = tables["lineage"], tables["rejected"]
    by_pipeline = lineage["pipeline"].value_counts().to_dict() if len(lineage) else {}
    context.add_output_metadata(
        {
            "dagster/row_count": len(tables["annotations"]),
            "augmented_frames": len(tables["frames"]),
            "augmented_annotations": len(tables["annotations"]),
            "rejected_draws": len(rejected),
            "by_pipeline": MetadataValue.json({str(k): int(v) for k, v in by_pipeline.items()}),
            "rejected": markdown_table(rejected.head(50).to_dict(orient="records")),
        }
    )
    return tables


def augment(
    frames: pd.DataFrame, human_corrections: pd.DataFrame, storage: StorageResource, config: AugmentConfig
) -> dict[str, pd.DataFrame]:
    # albumentations pulls in torch: imported here, not when the code location loads.
    from qwen_dataset.augment.pipelines import augment_batch, default_registry

    registry = default_registry(config.plugins or None)
    result = augment_batch(
        frames,
        human_corrections,
        storage.layout().blobs,
        config.pipelines,
        seed=config.seed,
        copies=config.copies,
        registry=registry,
    )
    return {
        "frames": result.frames,
        "annotations": result.annotations,
        "lineage": result.lineage,
        "rejected": result.rejected,
    }


def nothing_to_augment() -> dict[str, pd.DataFrame]:
    """The tables of a batch without frames (what augment_batch gives it), without loading
    albumentations and torch: seconds of every run worker of an empty batch."""
    return {
        "frames": to_frame([], FrameRecord),
        "annotations": to_frame([], AnnotationRecord),
        "lineage": pd.DataFrame([], columns=AUGMENTATION_LINEAGE_COLUMNS),
        "rejected": pd.DataFrame([], columns=AUGMENTATION_REJECTED_COLUMNS),
    }
