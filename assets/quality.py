"""Stage 5, qc_report: agreement, OCR accuracy, action paths, semantics; the gate before exports."""

import dataclasses

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    AssetIn,
    AutomationCondition,
    MetadataValue,
    asset,
    asset_check,
)

from assets._gates import quality_gate_result
from assets.partitions import batches
from qwen_dataset.store.layout import StorageLayout
from resources.database import AnnotationDatabaseResource
from resources.quality import QualityResource
from resources.storage import StorageResource

QUALITY_CODE_VERSION = "2"


def semantic_scorer(target: float):
    """Semantic consistency of described items; the language model loads only when there are any."""

    def score(people: pd.DataFrame):
        from qwen_dataset.quality.descriptions import description_pairs
        from qwen_dataset.quality.semantic import semantic_consistency

        pairs = description_pairs(people)
        return semantic_consistency(pairs, target=target) if pairs else None

    return score


def code_fidelity_scorer(layout: StorageLayout):
    """Render image_to_code items in headless Chromium; the browser starts only when there are any."""

    def score(final: pd.DataFrame, frames: pd.DataFrame):
        if not ((final["task"] == "image_to_code") & (final["status"] == "ok")).any():
            return []
        from qwen_dataset.quality.code_fidelity import CodeFidelityScorer, score_image_to_code_items

        pictures = dict(zip(frames["frame_id"], frames["blob_uri"]))
        with CodeFidelityScorer() as scorer:
            return score_image_to_code_items(final, frames, lambda fid: layout.blobs.local_path(pictures[fid]), scorer)

    return score


@asset(
    partitions_def=batches,
    group_name="quality",
    kinds={"python", "parquet", "html"},
    owners=["team:annotation"],
    code_version=QUALITY_CODE_VERSION,
    # Measured whenever the corrections change, so exports never run on an unmeasured batch.
    automation_condition=AutomationCondition.eager() & AutomationCondition.all_deps_blocking_checks_passed(),
    ins={
        "frames": AssetIn("frames"),
        "ai_annotations": AssetIn("ai_annotations"),
        "raw_uploads": AssetIn("raw_uploads"),
    },
    description=(
        "Quality of the batch: IoU agreement and OCR accuracy between the two annotators of double-blind "
        "items, AI vs final OCR accuracy, GUI action-path completeness, review and failure counts; each gated "
        "figure with its sample, 95 % interval and worst frames. "
        "Written as `exports/reports/<batch>.html` (the page) and `.json` (every figure); the headline figures are gated."
    ),
)
def qc_report(
    context: AssetExecutionContext,
    human_corrections: pd.DataFrame,
    ai_annotations: pd.DataFrame,
    frames: pd.DataFrame,
    raw_uploads: pd.DataFrame,
    annotation_db: AnnotationDatabaseResource,
    quality: QualityResource,
    storage: StorageResource,
) -> pd.DataFrame:
    # The metrics (scipy, rapidfuzz, Chromium) load with the step, not with the code location.
    from qwen_dataset.db.queries import human_annotations
    from qwen_dataset.quality.report import (
        build_qc_report,
        headline_frame,
        markdown_summary,
        render_plots,
        thumbnails_of,
        write_report_files,
    )

    batch = context.partition_key
    layout = storage.layout()
    human = human_annotations(annotation_db.engine(), batch)
    targets = quality.targets()
    report = build_qc_report(
        batch,
        human_corrections,
        ai_annotations,
        human,
        frames,
        targets=targets,
        semantic=semantic_scorer(targets.semantic_consistency),
        code_fidelity=code_fidelity_scorer(layout),
        min_sample=quality.min_sample(),
        uploads=raw_uploads,
    )
    plots = render_plots(report)
    pictures = dict(zip(frames["frame_id"], frames["blob_uri"]))
    shown = thumbnails_of(
        report, lambda frame_id: layout.blobs.local_path(pictures[frame_id]) if frame_id in pictures else None
    )
    paths = write_report_files(report, layout.reports, plots, shown, quality.workbench_url)
    floats = {f"qc/{k}": MetadataValue.float(float(v)) for k, v in report.figures().items() if v is not None}
    context.add_output_metadata(
        {
            "summary": MetadataValue.md(markdown_summary(report, plots)),
            "report_html": MetadataValue.path(str(paths["html"])),
            "dagster/uri": MetadataValue.path(str(paths["json"])),
            "targets": MetadataValue.json(dataclasses.asdict(report.targets)),
            "min_sample": MetadataValue.json(dataclasses.asdict(report.min_sample)),
            "statuses": MetadataValue.json(report.statuses()),
            **floats,
        }
    )
    return headline_frame([report])


@asset_check(
    asset=qc_report,
    blocking=True,
    partitions_def=batches,
    description=(
        "Mean IoU, OCR accuracy, action completeness and semantic consistency above target (Great Expectations), "
        "each on at least its minimum sample; an admin's waiver lets a failed figure through with a warning."
    ),
)
def qc_gate(
    context: AssetCheckExecutionContext,
    qc_report: pd.DataFrame,
    quality: QualityResource,
    annotation_db: AnnotationDatabaseResource,
) -> AssetCheckResult:
    from qwen_dataset.db.waivers import active_waivers
    from qwen_dataset.quality.gates import decide  # Great Expectations loads with the check

    # headline_frame writes one row per report: this batch's.
    row = qc_report.iloc[0].to_dict() if len(qc_report) else {"batch": ""}
    waivers = active_waivers(annotation_db.engine(), str(row.get("batch", "")))
    decision = decide(row, dataclasses.asdict(quality.targets()), dataclasses.asdict(quality.min_sample()), waivers)
    # One line per figure that failed, was waived or was under-sampled; the details are in the check.
    for line in decision.summary_lines():
        (context.log.error if "FAILED" in line else context.log.warning)(line)
    return quality_gate_result(decision, quality.workbench_url)
