"""release: a versioned, immutable dataset over every batch that passed its gates."""

import dataclasses
from pathlib import Path

import pandas as pd
from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    Config,
    DagsterEventType,
    DagsterInstance,
    MetadataValue,
    asset,
)
from pydantic import Field

from assets._metadata import markdown_table
from assets.partitions import BATCHES
from qwen_dataset.release.publish import publish_release, remove_tree
from qwen_dataset.release.selection import (
    UPSTREAM_OF_EXPORTS,
    LatestMaterialization,
    QualityPolicy,
    gate_decisions,
    quality_figures,
    quality_record,
    releasable_batches,
)
from qwen_dataset.release.splits import DEFAULT_RATIOS
from qwen_dataset.store.layout import StorageLayout
from qwen_dataset.store.paths import is_remote
from resources.database import AnnotationDatabaseResource
from resources.quality import QualityResource
from resources.storage import StorageResource

RELEASE_CODE_VERSION = "2"


class ReleaseConfig(Config):
    name: str = Field(default="qwen-dataset", description="Dataset name in the card.")
    ratios: list[float] = Field(default=list(DEFAULT_RATIOS), description="train/val/test shares, by upload.")
    include_augmented: bool = Field(default=True, description="Add augmented copies (train split only).")


RELEASE_INPUTS = (*UPSTREAM_OF_EXPORTS, "exports", "augmented_dataset")


def latest_materialization(instance: DagsterInstance) -> LatestMaterialization:
    """``latest(asset, batch)``: the storage id of the asset's latest materialization of the batch.

    One query per asset for every batch at once (not one per asset and batch: that made a release
    grow by about 50 ms a batch). Storage ids grow with every event, so they order materializations
    as their timestamps do.
    """
    ids = {
        name: instance.get_latest_storage_id_by_partition(AssetKey(name), DagsterEventType.ASSET_MATERIALIZATION)
        for name in RELEASE_INPUTS
    }

    def latest(name: str, batch: str) -> float | None:
        return ids[name].get(batch) if name in ids else None

    return latest


def _work_root(layout: StorageLayout) -> Path:
    """Where the release is assembled: in place on a local root, in the local cache on an object store."""
    releases = layout.releases
    if not is_remote(releases):
        return releases
    assert layout.cache is not None, "a URL root always has a local cache"
    return layout.cache / "releases"


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
        "`releases/<version>/`: every batch whose export is current (passed its gates), deterministic train/val/test "
        "split by upload, all formats, a dataset card; version = content hash, never overwritten."
    ),
)
def release(
    context: AssetExecutionContext,
    config: ReleaseConfig,
    storage: StorageResource,
    quality: QualityResource,
    annotation_db: AnnotationDatabaseResource,
) -> pd.DataFrame:
    from qwen_dataset.db.waivers import active_waivers  # the gate's rules load with the step

    layout = storage.layout()
    names = sorted(context.instance.get_dynamic_partitions(BATCHES))
    policy = QualityPolicy(
        dataclasses.asdict(quality.targets()),
        dataclasses.asdict(quality.min_sample()),
        active_waivers(annotation_db.engine()),
    )
    from qwen_dataset.exporters.bundle import release_formats_writer  # the writers load with the step
    from qwen_dataset.release.assemble import assemble_release
    from qwen_dataset.release.parts import PARTS_FOLDER, ReleaseParts

    latest = latest_materialization(context.instance)
    exported = [batch for batch in names if latest("exports", batch) is not None]
    work_root = _work_root(layout)
    parts = ReleaseParts(
        layout,
        latest,
        work_root / PARTS_FOLDER,
        ratios=config.ratios,
        include_augmented=config.include_augmented,
        log=context.log.warning,
    )
    headlines = parts.headlines(exported)
    decisions = gate_decisions(headlines, exported, policy)  # one decision for the selection and the record
    eligible, excluded = releasable_batches(latest, names, decisions)
    quality_in_force = quality_record(decisions, eligible, policy)
    for row in excluded:
        context.log.warning(f"batch {row['batch']} left out of the release: {row['reason']}")
    if not eligible:
        raise ValueError(
            "No batch is ready for a release: every batch is unexported or stopped by a gate. "
            "Materialize exports for at least one batch (see the excluded list in the logs)."
        )
    batches = parts.release_batches(eligible)
    parts.save()
    info = assemble_release(
        batches,
        work_root,
        qc=quality_figures(headlines, eligible),
        quality=quality_in_force,
        ratios=config.ratios,
        blobs=layout.blobs,
        write_formats=release_formats_writer(layout.blobs, layout.root, storage.label_studio_media_url or None),
        name=config.name,
    )
    if layout.remote:
        sealed = info.path
        assert not is_remote(sealed), "the release was assembled in the local cache"
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
            "waivers": MetadataValue.json(quality_in_force["waivers"]),
            "batches_read_from_manifests": len(parts.read_from_manifests),
        }
    )
    return pd.DataFrame(
        [{"version": info.version, "path": str(info.path), "batches": ",".join(eligible), "created": info.created}]
    )
