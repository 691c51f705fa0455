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
