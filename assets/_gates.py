"""Turning a Great Expectations suite result into a blocking Dagster check result."""

from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue

from assets._metadata import markdown_table
from qwen_dataset.quality.validation import SuiteResult


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
