"""augmented_dataset: bbox-aware augmentation of a batch's final annotations (albumentations)."""

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, Config, MetadataValue, asset
from pydantic import Field

from assets._metadata import markdown_table
from assets.partitions import batches
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
    by_pipeline = result.lineage["pipeline"].value_counts().to_dict() if len(result.lineage) else {}
    context.add_output_metadata(
        {
            "dagster/row_count": len(result.annotations),
            "augmented_frames": len(result.frames),
            "augmented_annotations": len(result.annotations),
            "rejected_draws": len(result.rejected),
            "by_pipeline": MetadataValue.json({str(k): int(v) for k, v in by_pipeline.items()}),
            "rejected": markdown_table(result.rejected.head(50).to_dict(orient="records")),
        }
    )
    return {
        "frames": result.frames,
        "annotations": result.annotations,
        "lineage": result.lineage,
        "rejected": result.rejected,
    }
