"""Turning a Great Expectations suite result into a blocking Dagster check result."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue

from assets._metadata import markdown_table
from qwen_dataset.quality.validation import SuiteResult

if TYPE_CHECKING:  # the gate's rules load with the check, not with the code location
    from qwen_dataset.quality.gates import GateDecision


def gate_result(result: SuiteResult) -> AssetCheckResult:
    """ERROR severity on failure, so downstream assets in the same run do not execute."""
    failed = [
        {
            "expectation": f.expectation,
            "column": f.column,
            "unexpected": f.unexpected_count,
            "sample": f.unexpected_sample[:5],
            "observed": f.observed_value,
        }
        for f in result.failures
    ]
    return AssetCheckResult(
        passed=result.success,
        severity=AssetCheckSeverity.ERROR,
        description=None if result.success else result.describe_failures(),
        metadata={
            "suite": result.suite,
            "rows": result.rows,
            "expectations": len(result.outcomes),
            "failed_expectations": markdown_table(failed),
            "failed_count": MetadataValue.int(len(failed)),
        },
    )


def quality_gate_result(decision: GateDecision, workbench_url: str) -> AssetCheckResult:
    """The quality gate in plain words: ERROR (blocking) when a figure fails and is not waived; WARN
    (not blocking) when a figure was waived or measured on too small a sample; passed otherwise."""
    figures = [
        {
            "figure": verdict.name,
            "status": verdict.status,
            "value": verdict.value,
            "target": f"> {verdict.target:g}",
            "sample": f"{verdict.sample} (min {verdict.min_sample})",
            "95% interval": "-" if verdict.ci_low is None else f"{verdict.ci_low:.3f}-{verdict.ci_high:.3f}",
            "raw": verdict.raw,
            "waiver": "" if verdict.waiver is None else f"{verdict.waiver.waived_by}: {verdict.waiver.reason}",
        }
        for verdict in decision.verdicts
    ]
    warned = bool(decision.warnings)
    return AssetCheckResult(
        passed=not decision.blocking and not warned,
        severity=AssetCheckSeverity.ERROR if decision.blocking else AssetCheckSeverity.WARN,
        description=decision.message(workbench_url),
        metadata={
            "figures": markdown_table(figures),
            "failed_count": MetadataValue.int(sum(v.status == "fail" for v in decision.verdicts)),
            "statuses": MetadataValue.json(decision.statuses()),
            # GX still decides each target; its raw outcome stays available beside the plain words.
            "expectations": decision.suite.describe_failures(),
        },
    )
