"""Which batches a release takes: one instance query per asset, one quality validation for all."""

from __future__ import annotations

import pandas as pd
import pytest
from dagster import AssetMaterialization, DagsterInstance

from qwen_dataset.quality.validation import validate_quality
from qwen_dataset.release.selection import quality_verdicts, releasable_batches

TARGETS = {"mean_iou": 0.85, "ocr_accuracy": 0.95}
PIPELINE = ("raw_uploads", "frames", "ai_annotations", "human_corrections", "qc_report", "exports")


def headline(batch: str, iou: float | None = 0.9, ocr: float | None = 0.99) -> pd.DataFrame:
    return pd.DataFrame([{"batch": batch, "mean_iou": iou, "ocr_accuracy": ocr}])


def positions(*orders: tuple[str, str]):
    """``latest`` from materializations in the given (asset, batch) order: later is larger."""
    seen = {order: number for number, order in enumerate(orders, start=1)}

    def latest(asset: str, batch: str) -> float | None:
        return seen.get((asset, batch))

    return latest


def test_only_the_failing_batch_is_kept_out_with_the_reason_it_would_get_alone():
    headlines = {"a": headline("a"), "b": headline("b", ocr=0.5), "c": headline("c", iou=None)}
    verdicts = quality_verdicts(headlines, ["a", "b", "c", "d"], TARGETS)
    assert set(verdicts) == {"b", "d"}
    assert verdicts["d"] == "no quality report"
    assert verdicts["b"] == f"quality gate fails: {validate_quality(headlines['b'], TARGETS).describe_failures()}"
    assert "ocr_accuracy" in verdicts["b"]


def test_each_reason_to_keep_a_batch_out():
    everything = [(asset, batch) for batch in ("ok", "stale", "unreviewed", "poor") for asset in PIPELINE]
    later = [
        ("frames", "stale"),  # reprocessed after its export
        ("human_corrections", "unreviewed"),  # corrected after the quality report...
        ("exports", "unreviewed"),  # ...and exported again without a new report
    ]
    latest = positions(*everything, *later)
    headlines = {name: headline(name) for name in ("ok", "stale", "unreviewed")} | {"poor": headline("poor", iou=0.1)}
    eligible, excluded = releasable_batches(latest, ["never", "ok", "poor", "stale", "unreviewed"], headlines, TARGETS)
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
    eligible, _ = releasable_batches(latest, ["b1", "b2"], {"b1": headline("b1"), "b2": headline("b2")}, TARGETS)
    assert eligible == ["b1"]
