"""Great Expectations 1.x suites for the manifests.

The Dagster asset checks in ``assets/`` run these suites and turn the result into an
``AssetCheckResult``; this module knows nothing about Dagster. GX is imported lazily (it takes
seconds) and its usage analytics are switched off: the pipeline never phones home.

Suites are lists of :class:`Expectation` (a GX expectation class name and its arguments), made
into GX objects only when GX validates. Every expectation here is about the values of rows, and
the range and set ones skip nulls, so on a table where no row can fail (no rows at all, as in
an empty batch, or only nulls where a range is expected, as in the quality row of a batch with
nothing to measure) each one holds: such a suite is answered without importing GX, which would
cost every run worker about 3 s for nothing. ``tests/test_validation.py`` holds these answers
to what GX says on the same tables.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import pandas as pd

from qwen_dataset.payloads import boxes_table, payload_problem
from qwen_dataset.records import AnnotationStatus, FrameKind, Task, load_payload

_CONTEXT_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    column: str
    success: bool
    unexpected_count: int
    unexpected_sample: list[Any]
    observed_value: Any
    # With an index column: that column's value (and the checked ones) of every unexpected row.
    unexpected_index: list[dict[str, Any]] = dataclasses.field(default_factory=list)


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
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


# The row-wise ("map") expectations the suites use: on zero rows each of them holds.
ROW_WISE_EXPECTATIONS = frozenset(
    {
        "ExpectColumnValuesToBeBetween",
        "ExpectColumnValuesToBeInSet",
        "ExpectColumnValuesToBeUnique",
        "ExpectColumnValuesToNotBeNull",
        "ExpectColumnPairValuesAToBeGreaterThanB",
        "ExpectCompoundColumnsToBeUnique",
    }
)
# Of those, the ones GX checks on non-null values only: a column of nulls cannot fail them.
NULL_SKIPPING_EXPECTATIONS = frozenset({"ExpectColumnValuesToBeBetween", "ExpectColumnValuesToBeInSet"})


@dataclasses.dataclass(frozen=True)
class Expectation:
    """One GX expectation: the class name in ``great_expectations.expectations`` and its arguments."""

    name: str
    kwargs: dict[str, Any]

    @property
    def type(self) -> str:
        """GX's expectation type, the class name in snake case (``expect_column_values_to_be_between``)."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", self.name).lower()

    @property
    def columns(self) -> list[str]:
        kwargs = self.kwargs
        if kwargs.get("column"):
            return [str(kwargs["column"])]
        if kwargs.get("column_list"):
            return [str(column) for column in kwargs["column_list"]]
        return [str(kwargs.get("column_A")), str(kwargs.get("column_B"))]

    def build(self) -> Any:
        """The GX expectation object (imports GX)."""
        return getattr(_gx_expectations(), self.name)(**self.kwargs)


class _Expectations:
    """``EXPECT.ExpectColumnValuesToBeBetween(column="x", min_value=0)``: GX's spelling, no GX import."""

    def __getattr__(self, name: str) -> Callable[..., Expectation]:
        if not name.startswith("Expect"):
            raise AttributeError(name)

        def expectation(**kwargs: Any) -> Expectation:
            return Expectation(name, kwargs)

        return expectation


EXPECT = _Expectations()


def _columns_of(kwargs: dict[str, Any]) -> str:
    """The column(s) an expectation is about: ``x``, ``a/b`` for a pair, ``a,b`` for a compound."""
    if kwargs.get("column"):
        return str(kwargs["column"])
    if kwargs.get("column_list"):
        return ",".join(kwargs["column_list"])
    return f"{kwargs.get('column_A')}/{kwargs.get('column_B')}"


def no_row_can_fail(frame: pd.DataFrame, expectation: Expectation) -> bool:
    """True when ``expectation`` holds on ``frame`` without looking at a value: a row-wise one on no
    rows, or a null-skipping one on a column of nulls. A column the frame lacks is left to GX,
    which reports it as a failure."""
    if expectation.name not in ROW_WISE_EXPECTATIONS:
        return False
    if not all(column in frame.columns for column in expectation.columns):
        return False
    if frame.empty:
        return True
    return expectation.name in NULL_SKIPPING_EXPECTATIONS and bool(frame[expectation.columns[0]].isna().all())


def run_suite(
    name: str, frame: pd.DataFrame, expectations: list[Expectation], index_column: str | None = None
) -> SuiteResult:
    """Validate ``frame`` against ``expectations`` as suite ``name`` (GX, unless no row can fail).

    ``index_column``: every failure lists the rows it found by this column (which batch failed).
    """
    if all(no_row_can_fail(frame, e) for e in expectations):
        outcomes = [ExpectationOutcome(e.type, _columns_of(e.kwargs), True, 0, [], None) for e in expectations]
        return SuiteResult(suite=name, rows=len(frame), outcomes=outcomes)
    return run_suite_with_gx(name, frame, expectations, index_column)


def run_suite_with_gx(
    name: str, frame: pd.DataFrame, expectations: list[Expectation], index_column: str | None = None
) -> SuiteResult:
    """Validate ``frame`` with Great Expectations, whatever its size."""
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
            suite.add_expectation(expectation.build())
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
        by_row = {"result_format": "COMPLETE", "unexpected_index_column_names": [index_column]}
        result = batch.validate(suite, result_format=by_row) if index_column else batch.validate(suite)
    outcomes = [
        ExpectationOutcome(
            expectation=r.expectation_config.type,
            column=_columns_of(r.expectation_config.kwargs),
            success=bool(r.success),
            unexpected_count=int(r.result.get("unexpected_count") or 0),
            unexpected_sample=list(r.result.get("partial_unexpected_list") or [])[:10],
            observed_value=r.result.get("observed_value"),
            unexpected_index=list(r.result.get("unexpected_index_list") or []) if index_column else [],
        )
        for r in result.results
    ]
    return SuiteResult(suite=name, rows=len(frame), outcomes=outcomes)


def _gx_expectations() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    return gx.expectations


def box_geometry_expectations() -> list[Expectation]:
    """Every box inside its frame with a positive size (pixel corners ``x1 < x2``, ``y1 < y2``)."""
    e = EXPECT
    return [
        e.ExpectColumnValuesToBeBetween(column="x1", min_value=0),
        e.ExpectColumnValuesToBeBetween(column="y1", min_value=0),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="x2", column_B="x1"),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="y2", column_B="y1"),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="width", column_B="x2", or_equal=True),
        e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="height", column_B="y2", or_equal=True),
    ]


def video_time_steps(frames: pd.DataFrame) -> pd.Series:
    """Difference between consecutive sampled timestamps of each video (NaN for the first)."""
    videos = frames[frames["kind"] == FrameKind.VIDEO_FRAME].sort_values(["upload_id", "index"])
    steps = videos.groupby("upload_id")["t"].diff()
    return steps.reindex(frames.index)


def validate_frames(frames: pd.DataFrame) -> SuiteResult:
    """Structural expectations on the frames manifest."""
    e = EXPECT
    table = (
        frames.assign(t_step=video_time_steps(frames)) if len(frames) else frames.assign(t_step=pd.Series(dtype=float))
    )
    expectations = [
        e.ExpectColumnValuesToBeUnique(column="frame_id"),
        e.ExpectColumnValuesToNotBeNull(column="frame_id"),
        e.ExpectColumnValuesToNotBeNull(column="blob_uri"),
        e.ExpectColumnValuesToBeBetween(column="width", min_value=1),
        e.ExpectColumnValuesToBeBetween(column="height", min_value=1),
        # Timestamps strictly increase within a video; NaN (first frame, non-video) is ignored.
        e.ExpectColumnValuesToBeBetween(column="t_step", min_value=0, strict_min=True),
        e.ExpectColumnValuesToBeBetween(column="t", min_value=0),
        # A sampled timestamp lies inside its video.
        e.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="duration", column_B="t", or_equal=True, ignore_row_if="either_value_is_missing"
        ),
    ]
    return run_suite("frames", table, expectations)


def payload_problems(annotations: pd.DataFrame) -> pd.Series:
    """Per row, why an ok payload does not have its task's shape (empty when it does, or not ok)."""
    problems = [
        payload_problem(task, payload) if status == AnnotationStatus.OK.value else ""
        for task, status, payload in zip(annotations["task"], annotations["status"], annotations["payload"])
    ]
    return pd.Series(problems, index=annotations.index, dtype=object)


def validate_annotations(annotations: pd.DataFrame, frames: pd.DataFrame) -> SuiteResult:
    """Expectations on annotation rows, their payloads' shape and every box they carry."""
    e = EXPECT
    rows = annotations.assign(payload_problem=payload_problems(annotations))
    id_results = run_suite(
        "annotations",
        rows,
        [
            e.ExpectColumnValuesToBeUnique(column="annotation_id"),
            e.ExpectColumnValuesToNotBeNull(column="frame_id"),
            e.ExpectColumnValuesToBeInSet(column="status", value_set=["ok", "failed"]),
            e.ExpectColumnValuesToBeInSet(column="source", value_set=["ai", "human", "arbitrated"]),
            e.ExpectColumnValuesToBeInSet(column="payload_problem", value_set=[""]),
        ],
    )
    box_results = run_suite(
        "boxes",
        boxes_table(annotations, frames),
        [
            e.ExpectColumnValuesToNotBeNull(column="width"),
            *box_geometry_expectations(),
            e.ExpectColumnValuesToBeBetween(column="confidence", min_value=0, max_value=1),
        ],
    )
    return SuiteResult(
        suite="annotations",
        rows=len(annotations),
        outcomes=id_results.outcomes + box_results.outcomes,
    )


def validate_quality(headline: pd.DataFrame, targets: dict[str, float], index_column: str | None = None) -> SuiteResult:
    """The spec's quality targets on the headline figures (one row per batch).

    Each figure must be strictly above its target. A figure with nothing to measure is null and
    passes: a batch without double-blind items has no agreement to fail.
    """
    e = EXPECT
    expectations = [
        e.ExpectColumnValuesToBeBetween(column=name, min_value=target, strict_min=True)
        for name, target in targets.items()
    ]
    table = headline.copy()
    for name in targets:
        table[name] = pd.to_numeric(table.get(name), errors="coerce") if name in table else float("nan")
    return run_suite("quality", table, expectations, index_column)


def validate_uploads(uploads: pd.DataFrame) -> SuiteResult:
    """Every file once, with a known status and type; ok files have distinct content ids."""
    e = EXPECT
    table = uploads.assign(
        ok_upload_id=uploads["upload_id"].where(uploads["status"] == "ok"),
        unexplained=(uploads["status"] != "ok") & (uploads["reason"].fillna("") == ""),
    )
    expectations = [
        e.ExpectColumnValuesToNotBeNull(column="original_name"),
        e.ExpectColumnValuesToBeInSet(column="status", value_set=["ok", "duplicate", "quarantined"]),
        e.ExpectColumnValuesToBeInSet(column="media_type", value_set=["image", "pdf", "video", "unknown"]),
        e.ExpectColumnValuesToBeBetween(column="bytes", min_value=0),
        e.ExpectColumnValuesToBeUnique(column="ok_upload_id"),
        # A duplicate or quarantined file always says why.
        e.ExpectColumnValuesToBeInSet(column="unexplained", value_set=[False]),
    ]
    return run_suite("uploads", table, expectations)


def events_table(annotations: pd.DataFrame, frames: pd.DataFrame) -> pd.DataFrame:
    """Every video event of an ok annotation, with the duration of its video."""
    durations = frames.set_index("frame_id")["duration"] if "duration" in frames else pd.Series(dtype=float)
    rows = []
    ok = annotations[(annotations["status"] == AnnotationStatus.OK) & (annotations["task"] == Task.VIDEO_EVENT)]
    for row in ok.itertuples(index=False):
        for event in load_payload(row.payload).get("events", []):
            rows.append(
                {
                    "frame_id": row.frame_id,
                    "start": float(event["start"]),
                    "end": float(event["end"]),
                    "duration": durations.get(row.frame_id),
                }
            )
    return pd.DataFrame(rows, columns=["frame_id", "start", "end", "duration"]).astype(
        {"start": float, "end": float, "duration": float}
    )


def validate_corrections(annotations: pd.DataFrame, frames: pd.DataFrame) -> SuiteResult:
    """The final annotations: one per frame and task, each of its task's shape, boxes inside frames,
    events inside videos."""
    e = EXPECT
    rows = run_suite(
        "corrections",
        annotations.assign(payload_problem=payload_problems(annotations)),
        [
            e.ExpectColumnValuesToBeUnique(column="annotation_id"),
            e.ExpectCompoundColumnsToBeUnique(column_list=["frame_id", "task"]),
            e.ExpectColumnValuesToBeInSet(column="frame_id", value_set=list(frames["frame_id"])),
            e.ExpectColumnValuesToBeInSet(column="payload_problem", value_set=[""]),
        ],
    )
    boxes = run_suite(
        "final_boxes",
        boxes_table(annotations, frames),
        [
            *box_geometry_expectations(),
        ],
    )
    events = run_suite(
        "final_events",
        events_table(annotations, frames),
        [
            e.ExpectColumnValuesToBeBetween(column="start", min_value=0),
            e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="end", column_B="start", or_equal=True),
            e.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="duration", column_B="end", or_equal=True, ignore_row_if="either_value_is_missing"
            ),
        ],
    )
    return SuiteResult("corrections", len(annotations), rows.outcomes + boxes.outcomes + events.outcomes)
