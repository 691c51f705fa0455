"""release: a versioned, immutable dataset over every batch that passed its gates."""

import dataclasses
from pathlib import Path

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
from qwen_dataset.exporters.bundle import write_release_formats
from qwen_dataset.quality.validation import validate_quality
from qwen_dataset.release.assemble import BatchExport, assemble_release
from qwen_dataset.release.publish import publish_release, remove_tree
from qwen_dataset.release.splits import DEFAULT_RATIOS, split_for_upload
from qwen_dataset.store.layout import StorageLayout
from qwen_dataset.store.paths import read_parquet
from resources.quality import QualityResource
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


def quality_verdict(layout: StorageLayout, batch: str, targets: dict[str, float]) -> str | None:
    """Why the batch's measured quality keeps it out (None when it passes).

    The gate decided this when the export ran; it is decided again on the stored figures so an
    export launched on its own, past a failed gate, cannot reach a release.
    """
    path = layout.manifest("qc_report", batch)
    if not path.exists():
        return "no quality report"
    result = validate_quality(read_parquet(path), targets)
    return None if result.success else f"quality gate fails: {result.describe_failures()}"


def releasable_batches(
    instance: DagsterInstance, names: list[str], layout: StorageLayout, targets: dict[str, float]
) -> tuple[list[str], list[dict[str, str]]]:
    """Batches whose export is current and whose quality passes; the others with the reason."""
    eligible, excluded = [], []
    for batch in names:
        exported = _latest(instance, "exports", batch)
        if exported is None:
            excluded.append({"batch": batch, "reason": "never exported (not processed yet, or stopped by a gate)"})
            continue
        newer = [name for name in UPSTREAM_OF_EXPORTS if (_latest(instance, name, batch) or 0) > exported]
        measured_before_review = (_latest(instance, "qc_report", batch) or 0) < (
            _latest(instance, "human_corrections", batch) or 0
        )
        verdict = quality_verdict(layout, batch, targets)
        if newer:
            excluded.append(
                {
                    "batch": batch,
                    "reason": f"{', '.join(newer)} changed after the last export: a gate stopped "
                    "the export or the batch is being reprocessed",
                }
            )
        elif measured_before_review:
            excluded.append({"batch": batch, "reason": "the quality report predates the latest corrections"})
        elif verdict:
            excluded.append({"batch": batch, "reason": verdict})
        else:
            eligible.append(batch)
    return eligible, excluded


def _augmented(
    instance: DagsterInstance, layout: StorageLayout, batch: str, ratios: list[float]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame] | None:
    """The batch's augmented copies in the train split (val/test stay real pictures).

    Copies made before the latest corrections carry old labels and are left out.
    """
    folder = layout.manifest("augmented_dataset", batch).with_suffix("")
    if not (folder / "frames.parquet").exists():
        return None
    if (_latest(instance, "augmented_dataset", batch) or 0) < (_latest(instance, "human_corrections", batch) or 0):
        return None
    frames = read_parquet(folder / "frames.parquet")
    annotations = read_parquet(folder / "annotations.parquet")
    lineage = read_parquet(folder / "lineage.parquet")
    train = frames["upload_id"].map(lambda upload: split_for_upload(upload, ratios) == "train")
    kept = set(frames.loc[train, "frame_id"])
    return (
        frames[frames["frame_id"].isin(kept)],
        annotations[annotations["frame_id"].isin(kept)],
        lineage[lineage["frame_id"].isin(kept)],
    )


def batch_export(
    instance: DagsterInstance, layout: StorageLayout, batch: str, config: ReleaseConfig, seen: set[str]
) -> BatchExport:
    """The batch's frames and final annotations; frames already taken from an earlier batch (the
    same file uploaded twice) are left to that batch, so no frame enters a release twice."""
    frames = read_parquet(layout.manifest("frames", batch))
    annotations = read_parquet(layout.manifest("human_corrections", batch))
    frames = frames[~frames["frame_id"].isin(seen)]
    kept = set(frames["frame_id"])
    annotations = annotations[annotations["frame_id"].isin(kept)]
    seen.update(kept)
    lineage = None
    augmented = _augmented(instance, layout, batch, config.ratios) if config.include_augmented else None
    if augmented is not None:
        copies, copy_annotations, copy_lineage = augmented
        # Copies follow their source frame: none of a frame that an earlier batch brought.
        copies = copies[
            copies["frame_id"].isin(set(copy_lineage.loc[copy_lineage["source_frame_id"].isin(kept), "frame_id"]))
        ]
        if len(copies):
            frames = pd.concat([frames, copies], ignore_index=True)
            annotations = pd.concat(
                [annotations, copy_annotations[copy_annotations["frame_id"].isin(set(copies["frame_id"]))]],
                ignore_index=True,
            )
            lineage = copy_lineage[copy_lineage["frame_id"].isin(set(copies["frame_id"]))]
    return BatchExport(
        batch=batch, frames=frames, annotations=annotations, export_dir=layout.exports(batch), lineage=lineage
    )


def quality_figures(layout: StorageLayout, names: list[str]) -> dict[str, object]:
    """Headline QC figures per batch and their mean over the release (for the dataset card)."""
    tables = [read_parquet(layout.manifest("qc_report", b)) for b in names if layout.manifest("qc_report", b).exists()]
    if not tables:
        return {}
    table = pd.concat(tables, ignore_index=True).set_index("batch")
    means = {
        column: (None if table[column].isna().all() else round(float(table[column].mean()), 4)) for column in table
    }
    per_batch = {
        batch: {k: (None if pd.isna(v) else round(float(v), 4)) for k, v in row.items()}
        for batch, row in table.iterrows()
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
def release(
    context: AssetExecutionContext, config: ReleaseConfig, storage: StorageResource, quality: QualityResource
) -> pd.DataFrame:
    layout = storage.layout()
    names = sorted(context.instance.get_dynamic_partitions(batches.name))
    targets = dataclasses.asdict(quality.targets())
    eligible, excluded = releasable_batches(context.instance, names, layout, targets)
    for row in excluded:
        context.log.warning(f"batch {row['batch']} left out of the release: {row['reason']}")
    if not eligible:
        raise ValueError(
            "No batch is ready for a release: every batch is unexported or stopped by a gate. "
            "Materialize exports for at least one batch (see the excluded list in the logs)."
        )
    seen: set[str] = set()
    # On an object store the release is assembled in the local cache, then uploaded.
    work_root = layout.cache / "releases" if layout.remote else layout.releases
    info = assemble_release(
        [batch_export(context.instance, layout, batch, config, seen) for batch in eligible],
        work_root,
        qc=quality_figures(layout, eligible),
        ratios=config.ratios,
        blobs=layout.blobs,
        write_formats=write_release_formats,
        name=config.name,
    )
    if layout.remote:
        sealed = Path(info.path)
        info = publish_release(info, layout.releases)
        remove_tree(sealed)  # the store has it now; a cache must stay deletable
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
    return pd.DataFrame(
        [{"version": info.version, "path": str(info.path), "batches": ",".join(eligible), "created": info.created}]
    )
