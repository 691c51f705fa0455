"""release: a versioned, immutable dataset over every batch that passed its gates."""

import pandas as pd
from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    Config,
    DagsterInstance,
    MetadataValue,
    asset,
)
from pydantic import Field

from assets._metadata import markdown_table
from assets.partitions import batches
from qwen_dataset.export_bundle import write_release_formats
from qwen_dataset.release import DEFAULT_RATIOS, BatchExport, assemble_release, split_for_upload
from qwen_dataset.storage import StorageLayout
from resources.storage import StorageResource

RELEASE_CODE_VERSION = "1"
# An export is current only if nothing upstream was materialized after it: a newer upstream run
# means a gate stopped the export, or the batch is being reprocessed.
UPSTREAM_OF_EXPORTS = ("raw_uploads", "frames", "ai_annotations", "human_corrections", "qc_report")


class ReleaseConfig(Config):
    name: str = Field(default="qwen-dataset", description="Dataset name in the card.")
    ratios: list[float] = Field(default=list(DEFAULT_RATIOS), description="train/val/test shares, by upload.")
    include_augmented: bool = Field(default=True, description="Add augmented copies (train split only).")


def _latest(instance: DagsterInstance, asset: str, batch: str) -> float | None:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[batch]), limit=1
    ).records
    return records[0].timestamp if records else None


def releasable_batches(instance: DagsterInstance, names: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    """Batches whose export is current; the others with the reason they are left out."""
    eligible, excluded = [], []
    for batch in names:
        exported = _latest(instance, "exports", batch)
        if exported is None:
            excluded.append({"batch": batch, "reason": "never exported (not processed yet, or stopped by a gate)"})
            continue
        newer = [name for name in UPSTREAM_OF_EXPORTS if (_latest(instance, name, batch) or 0) > exported]
        if newer:
            excluded.append(
                {"batch": batch, "reason": f"{', '.join(newer)} changed after the last export: a gate stopped "
                                           "the export or the batch is being reprocessed"}
            )
        else:
            eligible.append(batch)
    return eligible, excluded


def _augmented(layout: StorageLayout, batch: str, ratios: list[float]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame] | None:
    """The batch's augmented copies in the train split (val/test stay real pictures)."""
    folder = layout.manifest("augmented_dataset", batch).with_suffix("")
    if not (folder / "frames.parquet").exists():
        return None
    frames = pd.read_parquet(folder / "frames.parquet")
    annotations = pd.read_parquet(folder / "annotations.parquet")
    lineage = pd.read_parquet(folder / "lineage.parquet")
    train = frames["upload_id"].map(lambda upload: split_for_upload(upload, ratios) == "train")
    kept = set(frames.loc[train, "frame_id"])
    return (
        frames[frames["frame_id"].isin(kept)],
        annotations[annotations["frame_id"].isin(kept)],
        lineage[lineage["frame_id"].isin(kept)],
    )


def batch_export(layout: StorageLayout, batch: str, config: ReleaseConfig) -> BatchExport:
    frames = pd.read_parquet(layout.manifest("frames", batch))
    annotations = pd.read_parquet(layout.manifest("human_corrections", batch))
    lineage = None
    augmented = _augmented(layout, batch, config.ratios) if config.include_augmented else None
    if augmented is not None and len(augmented[0]):
        frames = pd.concat([frames, augmented[0]], ignore_index=True)
        annotations = pd.concat([annotations, augmented[1]], ignore_index=True)
        lineage = augmented[2]
    return BatchExport(batch=batch, frames=frames, annotations=annotations, export_dir=layout.exports(batch), lineage=lineage)


def quality_figures(layout: StorageLayout, names: list[str]) -> dict[str, object]:
    """Headline QC figures per batch and their mean over the release (for the dataset card)."""
    tables = [pd.read_parquet(layout.manifest("qc_report", b)) for b in names if layout.manifest("qc_report", b).exists()]
    if not tables:
        return {}
    table = pd.concat(tables, ignore_index=True).set_index("batch")
    means = {column: (None if table[column].isna().all() else round(float(table[column].mean()), 4)) for column in table}
    per_batch = {
        batch: {k: (None if pd.isna(v) else round(float(v), 4)) for k, v in row.items()} for batch, row in table.iterrows()
    }
    return {"mean": means, "per_batch": per_batch}


@asset(
    group_name="export",
    kinds={"python", "parquet", "json"},
    owners=["team:ml"],
    code_version=RELEASE_CODE_VERSION,
    deps=[
        AssetDep("exports", partition_mapping=AllPartitionMapping()),
        AssetDep("augmented_dataset", partition_mapping=AllPartitionMapping()),
    ],
    description=(
        "releases/<version>/: every batch whose export is current (passed its gates), deterministic train/val/test "
        "split by upload, all formats, a dataset card; version = content hash, never overwritten."
    ),
)
def release(context: AssetExecutionContext, config: ReleaseConfig, storage: StorageResource) -> pd.DataFrame:
    layout = storage.layout()
    names = sorted(context.instance.get_dynamic_partitions(batches.name))
    eligible, excluded = releasable_batches(context.instance, names)
    for row in excluded:
        context.log.warning(f"batch {row['batch']} left out of the release: {row['reason']}")
    if not eligible:
        raise ValueError(
            "No batch is ready for a release: every batch is unexported or stopped by a gate. "
            "Materialize exports for at least one batch (see the excluded list in the logs)."
        )
    info = assemble_release(
        [batch_export(layout, batch, config) for batch in eligible],
        layout.root / "releases",
        qc=quality_figures(layout, eligible),
        ratios=config.ratios,
        blobs=layout.blobs,
        write_formats=write_release_formats,
        name=config.name,
    )
    context.add_output_metadata(
        {
            "version": info.version,
            "created": info.created,
            "dagster/uri": MetadataValue.path(str(info.path)),
            "batches": MetadataValue.json(eligible),
            "excluded": markdown_table(excluded),
            "counts": MetadataValue.json(info.counts),
            "dataset_card": MetadataValue.path(str(info.path / "README.md")),
        }
    )
    return pd.DataFrame([{"version": info.version, "path": str(info.path), "batches": ",".join(eligible),
                          "created": info.created}])
