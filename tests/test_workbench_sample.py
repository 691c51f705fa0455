"""The real sample batch through the workbench on PostgreSQL: the pipeline pre-annotates it with
the real RapidOCR engine (whose version strings are long), the workbench imports it, annotators
correct it, and the corrections reach the exports.

The review that found the 500 on ``POST /api/batches/sample-0/import`` (``StringDataRightTruncation``)
did exactly this; synthetic batches with short version strings never showed it, and SQLite does
not enforce column lengths at all.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance
from sqlalchemy import select
from sqlalchemy.orm import Session

from qwen_dataset.db.models import WorkItem
from qwen_dataset.definitions import build_definitions
from qwen_dataset.prelabel.rapidocr_backend import RapidOcrBackend
from resources.prelabel import RapidOcrResource
from tests.test_workbench_api import build_world, my_items, open_annotation

BATCH = "sample-0"
PRELABEL = [AssetKey("raw_uploads"), AssetKey("frames"), AssetKey("ai_annotations")]


def _prelabelled_sample(tmp_path: Path, sample, database_url: str) -> tuple[Path, DagsterInstance]:
    """The sample batch in an inbox, materialized up to ai_annotations (real RapidOCR)."""
    folder, _ = sample
    root = tmp_path / "storage"
    shutil.copytree(folder, root / "inbox" / BATCH)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("batches", [BATCH])
    defs = build_definitions(storage_root=str(root), database_url=database_url)
    result = defs.resolve_job_def("process_batch").execute_in_process(
        instance=instance, partition_key=BATCH, asset_selection=PRELABEL
    )
    assert result.success
    return root, instance


REEXPORT = [AssetKey("human_corrections"), AssetKey("qc_report"), AssetKey("exports")]


@pytest.mark.slow
@pytest.mark.postgres
def test_the_sample_batch_is_imported_reviewed_and_exported_on_postgres(tmp_path, sample, postgres_url):
    root, instance = _prelabelled_sample(tmp_path, sample, postgres_url)
    ai = pd.read_parquet(root / "manifests" / "ai_annotations" / f"{BATCH}.parquet")
    real_version = RapidOcrResource().backend_version()  # RapidOCR's version and the classical engines'
    assert (
        real_version.startswith(RapidOcrBackend().version)
        and len(real_version) > 64
        and set(ai.loc[ai["task"] == "ocr", "template_version"]) == {real_version}
    )

    world = build_world(postgres_url, root)
    try:
        world.set_double_rate(0.0)
        imported = world.service().post(f"/api/batches/{BATCH}/import")
        assert imported.status_code == 200, imported.text
        ocr_rows = int((ai["task"] == "ocr").sum())
        assert imported.json()["items_created"] >= ocr_rows
        with Session(world.engine) as session:
            versions = set(session.scalars(select(WorkItem.ai_template_version).where(WorkItem.task == "ocr")))
        assert versions == {real_version}
        # An annotator's draft starts from the AI's version, long strings and all, and submits.
        owner = next(name for name in ("ann1", "ann2", "ann3") if my_items(world, name))
        entry = next(e for e in my_items(world, owner) if e["task"] == "ocr")
        client = world.client(owner)
        opened = open_annotation(client, entry["annotation_id"])
        submitted = client.post(
            f"/api/annotations/{entry['annotation_id']}/submit",
            json={"version": opened["version"], "result": opened["result"]},
        )
        assert submitted.status_code == 200, submitted.text

        # The sample video: the CPU backend marks no events, so its item starts empty, with the
        # shot cuts the import found by scanning the file.
        owner, entry = next(
            (name, e) for name in ("ann1", "ann2", "ann3") for e in my_items(world, name) if e["task"] == "video_event"
        )
        client = world.client(owner)
        opened = open_annotation(client, entry["annotation_id"])
        cuts = opened["task"]["data"]["timeline"]["cuts"]
        duration = opened["task"]["data"]["timeline"]["duration"]
        assert opened["result"] == [] and len(cuts) >= 1 and duration == pytest.approx(6.0, abs=0.1)
        assert client.get(opened["task"]["data"]["video"], headers={"Range": "bytes=0-15"}).status_code == 206
        events = [
            {"start": 0.0, "end": cuts[0], "description": "the first scene"},
            {"start": cuts[0], "end": duration, "description": "the picture changes colour"},
        ]
        reviewed = client.post(
            f"/api/annotations/{entry['annotation_id']}/submit", json={"version": opened["version"], "result": events}
        )
        assert reviewed.status_code == 200, reviewed.text
    finally:
        for client in world.clients:
            client.close()
        world.engine.dispose()

    # The corrections reach the exports: human_corrections -> qc_report -> exports, as the
    # corrections sensor runs them.
    defs = build_definitions(storage_root=str(root), database_url=postgres_url)
    rerun = defs.resolve_job_def("reexport_batch").execute_in_process(
        instance=instance, partition_key=BATCH, asset_selection=REEXPORT
    )
    assert rerun.success
    corrected = pd.read_parquet(root / "manifests" / "human_corrections" / f"{BATCH}.parquet")
    video_rows = corrected[corrected["task"] == "video_event"]
    assert video_rows["source"].tolist() == ["human"] and video_rows["reviewed"].tolist() == [True]
    lines = (root / "exports" / BATCH / "qwen_video_event.jsonl").read_text(encoding="utf-8").splitlines()
    answer = json.loads(json.loads(lines[0])["conversations"][1]["value"])
    assert [event["description"] for event in answer["events"]] == ["the first scene", "the picture changes colour"]
    assert answer["events"][0]["end"] == pytest.approx(cuts[0], abs=0.01)
    table = pd.read_csv(root / "exports" / BATCH / "annotations.csv")
    assert "the picture changes colour" in set(table["text"].dropna())
