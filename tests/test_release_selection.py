"""Which batches a release takes: one instance query per asset, one quality validation for all."""

from __future__ import annotations

import pandas as pd
import pytest
from dagster import AssetMaterialization, DagsterInstance

from qwen_dataset.quality.gates import Waiver, decide, decide_many
from qwen_dataset.release.selection import (
    QualityPolicy,
    gate_decisions,
    headline_row,
    quality_verdicts,
    releasable_batches,
)

TARGETS = {"mean_iou": 0.85, "ocr_accuracy": 0.95}
POLICY = QualityPolicy(TARGETS, {name: 0 for name in TARGETS})  # these headlines carry no sample sizes
PIPELINE = ("raw_uploads", "frames", "ai_annotations", "human_corrections", "qc_report", "exports")


def headline(batch: str, iou: float | None = 0.9, ocr: float | None = 0.99) -> dict:
    """The batch's headline row as the release reads it from its qc_report table."""
    return headline_row(pd.DataFrame([{"batch": batch, "mean_iou": iou, "ocr_accuracy": ocr}]))


def positions(*orders: tuple[str, str]):
    """``latest`` from materializations in the given (asset, batch) order: later is larger."""
    seen = {order: number for number, order in enumerate(orders, start=1)}

    def latest(asset: str, batch: str) -> float | None:
        return seen.get((asset, batch))

    return latest


def test_only_the_failing_batch_is_kept_out_with_the_reason_it_would_get_alone():
    headlines = {"a": headline("a"), "b": headline("b", ocr=0.5), "c": headline("c", iou=None)}
    verdicts = quality_verdicts(gate_decisions(headlines, ["a", "b", "c", "d"], POLICY), ["a", "b", "c", "d"])
    assert set(verdicts) == {"b", "d"}
    assert verdicts["d"] == "no quality report"
    alone = decide(headlines["b"], TARGETS, POLICY.min_sample)
    failed = [verdict.describe() for verdict in alone.verdicts if verdict.status == "fail"]
    assert verdicts["b"] == f"quality gate fails: {'; '.join(failed)}"
    assert "ocr_accuracy" in verdicts["b"]


def test_one_validation_for_many_batches_decides_as_one_per_batch():
    rows = {
        "a": {"batch": "a", "mean_iou": 0.9, "mean_iou_sample": 9, "ocr_accuracy": 0.99, "ocr_accuracy_sample": 9},
        "b": {"batch": "b", "mean_iou": 0.5, "mean_iou_sample": 9, "ocr_accuracy": 0.5, "ocr_accuracy_sample": 9},
        "c": {"batch": "c", "mean_iou": 0.1, "mean_iou_sample": 2, "ocr_accuracy": 0.2, "ocr_accuracy_sample": 9},
        "d": {"batch": "d", "mean_iou": None, "ocr_accuracy": 0.96, "ocr_accuracy_sample": 9},
    }
    minimum = {"mean_iou": 5, "ocr_accuracy": 5}
    waivers = [
        Waiver(
            batch="c",
            figure="ocr_accuracy",
            reason="a known hard scan",
            waived_by="ada",
            waived_at="2026-12-03T00:00:00Z",
        )
    ]
    together = decide_many(rows, TARGETS, minimum, waivers)
    for batch, row in rows.items():
        alone = decide(row, TARGETS, minimum, waivers)
        assert together[batch].statuses() == alone.statuses(), batch
        assert together[batch].suite.success == alone.suite.success, batch
        assert [f.column for f in together[batch].suite.failures] == [f.column for f in alone.suite.failures]
    assert together["b"].statuses() == {"mean_iou": "fail", "ocr_accuracy": "fail"}
    assert together["c"].statuses() == {"mean_iou": "insufficient sample", "ocr_accuracy": "waived"}


def test_many_batches_decided_together_get_each_their_own_rows_and_waivers():
    import random

    rng = random.Random(7)
    minimum = {"mean_iou": 5, "ocr_accuracy": 5}
    rows, waivers = {}, []
    for number in range(60):
        batch = f"batch-{number:02d}"
        rows[batch] = {
            "batch": batch,
            "mean_iou": rng.choice([None, 0.5, 0.84, 0.95]),
            "mean_iou_sample": rng.choice([2, 9]),
            "ocr_accuracy": rng.choice([0.5, 0.9, 0.99]),
            "ocr_accuracy_sample": rng.choice([3, 9]),
        }
        if number % 4 == 0:
            figure = rng.choice(["mean_iou", "ocr_accuracy"])
            waivers.append(Waiver(batch, figure, "a hard set", "ada", "2026-12-04T00:00:00Z"))
    waivers.append(Waiver("a batch gone", "ocr_accuracy", "old", "ada", "2026-12-04T00:00:00Z"))
    together = decide_many(rows, TARGETS, minimum, waivers)
    statuses = set()
    for batch, row in rows.items():
        alone = decide(row, TARGETS, minimum, waivers)
        assert together[batch].statuses() == alone.statuses(), batch
        assert [verdict.waiver for verdict in together[batch].verdicts] == [v.waiver for v in alone.verdicts], batch
        own = {
            (o.column, o.success, o.unexpected_count, tuple(o.unexpected_sample))
            for o in together[batch].suite.outcomes
        }
        assert own == {
            (o.column, o.success, o.unexpected_count, tuple(o.unexpected_sample)) for o in alone.suite.outcomes
        }
        assert all(row["batch"] == batch for o in together[batch].suite.outcomes for row in o.unexpected_index)
        statuses |= set(together[batch].statuses().values())
    assert {"pass", "fail", "waived", "insufficient sample", "no data"} <= statuses


def test_each_reason_to_keep_a_batch_out():
    everything = [(asset, batch) for batch in ("ok", "stale", "unreviewed", "poor") for asset in PIPELINE]
    later = [
        ("frames", "stale"),  # reprocessed after its export
        ("human_corrections", "unreviewed"),  # corrected after the quality report...
        ("exports", "unreviewed"),  # ...and exported again without a new report
    ]
    latest = positions(*everything, *later)
    headlines = {name: headline(name) for name in ("ok", "stale", "unreviewed")} | {"poor": headline("poor", iou=0.1)}
    names = ["never", "ok", "poor", "stale", "unreviewed"]
    eligible, excluded = releasable_batches(latest, names, gate_decisions(headlines, names, POLICY))
    assert eligible == ["ok"]
    reasons = {row["batch"]: row["reason"] for row in excluded}
    assert list(reasons) == ["never", "poor", "stale", "unreviewed"]
    assert reasons["never"].startswith("never exported")
    assert reasons["stale"].startswith("frames changed after the last export")
    assert reasons["unreviewed"] == "the quality report predates the latest corrections"
    assert reasons["poor"].startswith("quality gate fails") and "mean_iou" in reasons["poor"]


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


def test_the_instance_is_asked_once_per_asset_and_orders_materializations(instance, monkeypatch):
    from assets.release import RELEASE_INPUTS, latest_materialization

    instance.add_dynamic_partitions("batches", ["b1", "b2"])
    for asset in PIPELINE:
        instance.report_runless_asset_event(AssetMaterialization(asset, partition="b1"))
    instance.report_runless_asset_event(AssetMaterialization("exports", partition="b2"))
    instance.report_runless_asset_event(AssetMaterialization("frames", partition="b2"))  # after its export
    calls = []
    original = instance.get_latest_storage_id_by_partition
    monkeypatch.setattr(
        instance,
        "get_latest_storage_id_by_partition",
        lambda key, event_type: calls.append(key) or original(key, event_type),
    )
    latest = latest_materialization(instance)
    assert len(calls) == len(RELEASE_INPUTS)
    assert latest("frames", "b1") < latest("exports", "b1")
    assert latest("frames", "b2") > latest("exports", "b2")
    assert latest("augmented_dataset", "b1") is None and latest("qc_report", "b2") is None
    headlines = {"b1": headline("b1"), "b2": headline("b2")}
    eligible, _ = releasable_batches(latest, ["b1", "b2"], gate_decisions(headlines, ["b1", "b2"], POLICY))
    assert eligible == ["b1"]


# The release of tests/test_release.py's two batches, as main built it before releases read each
# batch's figures once: the same input must keep its version (a new digest re-releases every dataset).
FIXED_INPUT_DIGEST = "b56e772b6d97bb3e33e657b323719094302cd74254f10639cc456812764f6a1a"
FIXED_INPUT_SPLITS_SHA256 = "d4d34e957439"


def test_a_fixed_input_keeps_its_version_and_its_bytes(tmp_path):
    import dataclasses
    import json

    from qwen_dataset.exporters.bundle import link_images, release_formats_writer
    from qwen_dataset.release.assemble import assemble_release
    from qwen_dataset.store.blobs import BlobStore
    from tests.test_release import QC, two_batches

    store = BlobStore(tmp_path / "storage")
    batches = two_batches(store)
    export = tmp_path / "exports" / "b1"  # b1's pictures come from its export folder, b2's from the blobs
    link_images(batches[0].frames, store, export)
    batches[0] = dataclasses.replace(batches[0], export_dir=export)
    writer = release_formats_writer(store, tmp_path)
    info = assemble_release(batches, tmp_path / "releases", qc=QC, blobs=store, write_formats=writer)
    assert info.digest == FIXED_INPUT_DIGEST
    files = json.loads((info.path / "release.json").read_text())["files"]
    assert files["splits.json"]["sha256"].startswith(FIXED_INPUT_SPLITS_SHA256)
    assert sum(name.startswith("images/") for name in files) == 32  # 18 + 13 frames and the augmented one


def test_the_cards_quality_figures_read_cells_as_numbers_and_skip_what_is_not_one():
    from qwen_dataset.release.selection import quality_figures

    rows = {
        "a": headline("a", iou=0.912345678, ocr=0.5),
        "b": headline("b", iou=None, ocr=1.0) | {"ocr_accuracy": "0.75", "samples": 40},
        "c": {},  # a report without rows
        "d": headline("d", iou=float("nan"), ocr=None) | {"action_completeness": "n/a"},
    }
    figures = quality_figures(rows, ["a", "b", "c", "d", "missing"])
    assert figures["mean"] == {
        "mean_iou": 0.9123,
        "ocr_accuracy": 0.625,
        "action_completeness": None,
    }
    assert figures["per_batch"] == {
        "a": {"mean_iou": 0.9123, "ocr_accuracy": 0.5, "action_completeness": None},
        "b": {"mean_iou": None, "ocr_accuracy": 0.75, "action_completeness": None},
        "d": {"mean_iou": None, "ocr_accuracy": None, "action_completeness": None},
    }
    assert quality_figures(rows, ["c", "missing"]) == {}


def test_the_cards_mean_rounds_a_tie_as_pandas_does():
    """The mean enters the version: the same figures must keep the same rounding across releases."""
    from qwen_dataset.release.selection import quality_figures

    values = [0.775, 0.625, 0.4375, 0.895, 0.16, 0.5525, 0.0, 0.485]
    rows = {f"b{i}": {"batch": f"b{i}", "action_completeness": value} for i, value in enumerate(values)}
    assert round(sum(values) / len(values), 4) == 0.4913  # a plain sum lands on the other side of the tie
    assert quality_figures(rows, list(rows))["mean"]["action_completeness"] == 0.4912
