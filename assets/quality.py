"""Stage 5, qc_report: agreement, OCR accuracy, action paths, semantics; the gate before exports."""

import dataclasses

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetIn,
    AutomationCondition,
    MetadataValue,
    asset,
    asset_check,
)

from assets._gates import gate_result
from assets.partitions import batches
from qwen_dataset.quality.validation import validate_quality
from qwen_dataset.store.layout import StorageLayout
from resources.database import AnnotationDatabaseResource
from resources.quality import QualityResource
from resources.storage import StorageResource

QUALITY_CODE_VERSION = "1"


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
    ins={"frames": AssetIn("frames"), "ai_annotations": AssetIn("ai_annotations")},
    description=(
        "Quality of the batch: IoU agreement and OCR accuracy between the two annotators of double-blind "
        "items, AI vs final OCR accuracy, GUI action-path completeness, review and failure counts. "
        "Written as exports/reports/<batch>.json|.html; the headline figures are gated."
    ),
)
def qc_report(
    context: AssetExecutionContext,
    human_corrections: pd.DataFrame,
    ai_annotations: pd.DataFrame,
    frames: pd.DataFrame,
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
    )
    plots = render_plots(report)
    paths = write_report_files(report, layout.reports, plots)
    floats = {f"qc/{k}": MetadataValue.float(float(v)) for k, v in report.figures().items() if v is not None}
    context.add_output_metadata(
        {
            "summary": MetadataValue.md(markdown_summary(report, plots)),
            "report_html": MetadataValue.path(str(paths["html"])),
            "dagster/uri": MetadataValue.path(str(paths["json"])),
            "targets": MetadataValue.json(dataclasses.asdict(report.targets)),
            **floats,
        }
    )
    return headline_frame([report])


@asset_check(
    asset=qc_report,
    blocking=True,
    partitions_def=batches,
    description="Great Expectations: mean IoU, OCR accuracy, action completeness and semantic consistency above target.",
)
def qc_gate(qc_report: pd.DataFrame, quality: QualityResource) -> AssetCheckResult:
    return gate_result(validate_quality(qc_report, dataclasses.asdict(quality.targets())))
