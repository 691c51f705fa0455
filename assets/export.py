"""Stage 6, exports: the batch's dataset in every format (qwen-vl-finetune, LLaMA-Factory, TRL, COCO, Label Studio)."""

import dataclasses
from pathlib import Path

import pandas as pd
from dagster import AssetExecutionContext, AutomationCondition, MetadataValue, asset

from assets._metadata import markdown_table
from assets.partitions import batches
from qwen_dataset.exporters.label_studio.media import media_urls
from qwen_dataset.store.layout import StorageLayout
from resources.storage import StorageResource

EXPORT_CODE_VERSION = "2"


def write_export_folder(
    layout: StorageLayout,
    batch: str,
    human_corrections: pd.DataFrame,
    frames: pd.DataFrame,
    label_studio_prefix: str | None,
) -> list:
    """``exports/<batch>/`` all or nothing; returns the files written (paths in their final place).

    The files are written into a staging folder that replaces the previous export only when every
    format succeeded (on object storage: written locally, pictures as copies, then uploaded with
    manifest.json last).
    """
    from qwen_dataset.exporters.bundle import write_batch_exports  # every writer loads with the step

    out_dir = layout.exports(batch)
    media_url = media_urls(layout.root, f"exports/{batch}", label_studio_prefix)
    with layout.publishing(out_dir, mirror=True, last=["manifest.json"]) as staging:
        written = write_batch_exports(human_corrections, frames, layout.blobs, staging, media_url)
    return [dataclasses.replace(f, path=str(out_dir / Path(f.path).relative_to(staging))) for f in written]


@asset(
    partitions_def=batches,
    group_name="export",
    kinds={"python", "json"},
    owners=["team:ml"],
    code_version=EXPORT_CODE_VERSION,
    # The quality gate sits on qc_report: a batch that fails it is never exported.
    deps=["qc_report"],
    automation_condition=AutomationCondition.eager() & AutomationCondition.all_deps_blocking_checks_passed(),
    description=(
        "`exports/<batch>/`: per task qwen-vl-finetune JSONL (bbox_2d in 0-1000), LLaMA-Factory messages JSONL with "
        "dataset_info.json, TRL Parquet (images embedded), COCO `annotations/instances_<task>.json`, Label Studio tasks "
        "and config; annotations.csv, actions.dsl; images and event videos as hard links (copies on object storage). "
        "All or nothing: a failed format leaves the previous export as it was."
    ),
)
def exports(
    context: AssetExecutionContext, human_corrections: pd.DataFrame, frames: pd.DataFrame, storage: StorageResource
) -> pd.DataFrame:
    layout = storage.layout()
    out_dir = layout.exports(context.partition_key)
    files = write_export_folder(
        layout, context.partition_key, human_corrections, frames, storage.label_studio_media_url or None
    )
    table = pd.DataFrame([dataclasses.asdict(f) for f in files])
    context.add_output_metadata(
        {
            "dagster/uri": MetadataValue.path(str(out_dir)),
            "dagster/row_count": len(table),
            "files": markdown_table([{"format": f.format, "records": f.records, "path": f.path} for f in files]),
            **{f"{f.format}_records": f.records for f in files},
        }
    )
    return table
