"""Jobs: the whole graph for one batch, and the re-export of reviewed data."""

from dagster import AssetSelection, define_asset_job

PIPELINE_ASSETS = [
    "raw_uploads",
    "frames",
    "ai_annotations",
    "human_corrections",
    "qc_report",
    "exports",
    "augmented_dataset",
]

process_batch_job = define_asset_job(
    name="process_batch",
    selection=AssetSelection.assets(*PIPELINE_ASSETS),
    description="Ingest, extract frames, pre-annotate, merge corrections and export one batch (gates included).",
)

reexport_job = define_asset_job(
    name="reexport_batch",
    selection=AssetSelection.assets("human_corrections", "qc_report", "exports", "augmented_dataset"),
    description="Re-read human corrections, re-measure quality, re-export and re-augment one batch.",
)

release_job = define_asset_job(
    name="release_dataset",
    selection=AssetSelection.assets("release"),
    description="Assemble a versioned release from every batch whose export is current.",
)
