"""Great Expectations 1.x suites for the manifests.

The Dagster asset checks in ``assets/`` run these suites and turn the result into an
``AssetCheckResult``; this module knows nothing about Dagster. GX is imported lazily (it takes
seconds) and its usage analytics are switched off: the pipeline never phones home.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from functools import lru_cache
from typing import Any

import pandas as pd

from qwen_dataset.records import FrameKind, regions_table

_CONTEXT_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    column: str
    success: bool
    unexpected_count: int
    unexpected_sample: list[Any]
    observed_value: Any


@dataclasses.dataclass(frozen=True)
class SuiteResult:
    suite: str
    rows: int
    outcomes: list[ExpectationOutcome]

    @property
    def success(self) -> bool:
        return all(outcome.success for outcome in self.outcomes)

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [outcome for outcome in self.outcomes if not outcome.success]

    def describe_failures(self) -> str:
        lines = [
            f"- {f.expectation} on `{f.column}`: {f.unexpected_count} unexpected "
            f"(e.g. {f.unexpected_sample[:5]}); observed {f.observed_value}"
            for f in self.failures
        ]
        return "\n".join(lines) or "all expectations met"


@lru_cache(maxsize=1)
def _context() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    return context


def run_suite(name: str, frame: pd.DataFrame, expectations: list[Any]) -> SuiteResult:
    """Validate ``frame`` against ``expectations`` (GX expectation objects) as suite ``name``."""
    import great_expectations as gx

    with _CONTEXT_LOCK:
        context = _context()
        source_name = f"qwen_{name}"
        try:
            source = context.data_sources.get(source_name)
        except (KeyError, ValueError):
            source = context.data_sources.add_pandas(source_name)
        try:
            asset = source.get_asset(name)
        except LookupError:
            asset = source.add_dataframe_asset(name)
        try:
            batch_definition = asset.get_batch_definition("whole")
        except KeyError:
            batch_definition = asset.add_batch_definition_whole_dataframe("whole")
        suite = gx.ExpectationSuite(name=name)
        for expectation in expectations:
            suite.add_expectation(expectation)
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite)
    outcomes = [
        ExpectationOutcome(
            expectation=r.expectation_config.type,
            column=str(r.expectation_config.kwargs.get("column") or
                       f"{r.expectation_config.kwargs.get('column_A')}/{r.expectation_config.kwargs.get('column_B')}"),
            success=bool(r.success),
            unexpected_count=int(r.result.get("unexpected_count") or 0),
            unexpected_sample=list(r.result.get("partial_unexpected_list") or [])[:10],
            observed_value=r.result.get("observed_value"),
        )
        for r in result.results
    ]
    return SuiteResult(suite=name, rows=len(frame), outcomes=outcomes)


def _gx() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    return gx.expectations


def video_time_steps(frames: pd.DataFrame) -> pd.Series:
    """Difference between consecutive sampled timestamps of each video (NaN for the first)."""
    videos = frames[frames["kind"] == FrameKind.VIDEO_FRAME].sort_values(["upload_id", "index"])
    steps = videos.groupby("upload_id")["t"].diff()
    return steps.reindex(frames.index)


def validate_frames(frames: pd.DataFrame) -> SuiteResult:
    """Structural expectations on the frames manifest."""
    e = _gx()
    table = frames.assign(t_step=video_time_steps(frames)) if len(frames) else frames.assign(t_step=pd.Series(dtype=float))
    expectations = [
        e.ExpectColumnValuesToBeUnique(column="frame_id"),
        e.ExpectColumnValuesToNotBeNull(column="frame_id"),
        e.ExpectColumnValuesToNotBeNull(column="blob_uri"),
        e.ExpectColumnValuesToBeBetween(column="width", min_value=1),
        e.ExpectColumnValuesToBeBetween(column="height", min_value=1),
        # Timestamps strictly increase within a video; NaN (first frame, non-video) is ignored.
        e.ExpectColumnValuesToBeBetween(column="t_step", min_value=0, strict_min=True),
        e.ExpectColumnValuesToBeBetween(column="t", min_value=0),
    ]
    return run_suite("frames", table, expectations)


def validate_annotations(annotations: pd.DataFrame, frames: pd.DataFrame, tasks: tuple[str, ...] = ("ocr",)) -> SuiteResult:
    """Expectations on annotation rows and on every region box they carry."""
    e = _gx()
    regions = regions_table(annotations, frames, tasks)
    id_results = run_suite(
        "annotations",
        annotations,
        [
            e.ExpectColumnValuesToBeUnique(column="annotation_id"),
            e.ExpectColumnValuesToNotBeNull(column="frame_id"),
            e.ExpectColumnValuesToBeInSet(column="status", value_set=["ok", "failed"]),
            e.ExpectColumnValuesToBeInSet(column="source", value_set=["ai", "human", "arbitrated"]),
        ],
    )
    region_results = run_suite(
        "regions",
        regions,
        [
            e.ExpectColumnValuesToNotBeNull(column="width"),
            e.ExpectColumnValuesToBeBetween(column="x1", min_value=0),
            e.ExpectColumnValuesToBeBetween(column="y1", min_value=0),
            e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="x2", column_B="x1"),
            e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="y2", column_B="y1"),
            e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="width", column_B="x2", or_equal=True),
            e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="height", column_B="y2", or_equal=True),
            e.ExpectColumnValuesToBeBetween(column="confidence", min_value=0, max_value=1),
        ],
    )
    return SuiteResult(
        suite="annotations",
        rows=len(annotations),
        outcomes=id_results.outcomes + region_results.outcomes,
    )




def validate_quality(headline: pd.DataFrame, targets: dict[str, float]) -> SuiteResult:
    """The spec's quality targets on the headline figures (one row per batch).

    Each figure must be strictly above its target. A figure with nothing to measure is null and
    passes: a batch without double-blind items has no agreement to fail.
    """
    e = _gx()
    expectations = [
        e.ExpectColumnValuesToBeBetween(column=name, min_value=target, strict_min=True)
        for name, target in targets.items()
    ]
    table = headline.copy()
    for name in targets:
        table[name] = pd.to_numeric(table.get(name), errors="coerce") if name in table else float("nan")
    return run_suite("quality", table, expectations)
