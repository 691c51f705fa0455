"""Stage 4, human_corrections: final human work from the annotation database over the AI's."""

import pandas as pd
from dagster import AssetCheckResult, AssetExecutionContext, AssetIn, AutomationCondition, asset, asset_check

from assets._gates import gate_result
from assets._metadata import manifest_metadata
from assets.partitions import batches
from qwen_dataset.db.corrections import apply_corrections
from qwen_dataset.quality.validation import validate_corrections
from qwen_dataset.records import AnnotationRecord
from resources.database import AnnotationDatabaseResource

REVIEW_CODE_VERSION = "1"


@asset(
    partitions_def=batches,
    group_name="review",
    kinds={"python", "parquet", "sql"},
    owners=["team:annotation"],
    code_version=REVIEW_CODE_VERSION,
    # Refresh when the AI annotations change, but never past a failed blocking gate.
    automation_condition=AutomationCondition.eager() & AutomationCondition.all_deps_blocking_checks_passed(),
    description=(
        "One annotation per frame and task: the final human or arbitrated version from the annotation "
        "database where one exists, else the AI's, passed through with reviewed=false."
    ),
)
def human_corrections(
    context: AssetExecutionContext, ai_annotations: pd.DataFrame, annotation_db: AnnotationDatabaseResource
) -> pd.DataFrame:
    from qwen_dataset.db.queries import final_annotations  # SQLAlchemy's ORM loads with the step

    human = final_annotations(annotation_db.engine(), context.partition_key)
    merged = apply_corrections(ai_annotations, human)
    context.add_output_metadata(
        {
            **manifest_metadata(merged, AnnotationRecord),
            "human_rows": len(human),
            "reviewed": int(merged["reviewed"].sum()) if len(merged) else 0,
            "unreviewed": int((~merged["reviewed"].astype(bool)).sum()) if len(merged) else 0,
        }
    )
    return merged


@asset_check(
    asset=human_corrections,
    blocking=True,
    partitions_def=batches,
    additional_ins={"frames": AssetIn("frames")},
    description=(
        "Great Expectations: one final annotation per frame and task, of a known frame; every box of every task "
        "inside its frame; every video event inside its video."
    ),
)
def human_corrections_gate(human_corrections: pd.DataFrame, frames: pd.DataFrame) -> AssetCheckResult:
    return gate_result(validate_corrections(human_corrections, frames))
