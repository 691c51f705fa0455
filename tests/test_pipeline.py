"""Integration: materialize the whole graph for the sample batch on real Dagster instances."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml
from dagster import AssetKey, DagsterInstance, build_schedule_context, build_sensor_context
from pycocotools.coco import COCO

from assets.automation import inbox_sensor, nightly_reexport
from qwen_dataset.db.engine import sqlite_url
from qwen_dataset.definitions import build_definitions
from qwen_dataset.quality.ocr_truth import OcrScore, score_against_sample_truth
from qwen_dataset.store.inbox import mark_ready
from resources.storage import StorageResource

BATCH = "sample-0"
REPO = Path(__file__).resolve().parents[1]


def _root_with_batch(tmp_path: Path, sample, batch: str = BATCH) -> Path:
    folder, _ = sample
    root = tmp_path / "storage"
    shutil.copytree(folder, root / "inbox" / batch)
    return root


def _run(root: Path, instance: DagsterInstance, batch: str = BATCH, **kwargs):
    defs = build_definitions(storage_root=str(root), database_url=sqlite_url(root / "annotations.db"), **kwargs)
    instance.add_dynamic_partitions("batches", [batch])
    return defs.resolve_job_def("process_batch").execute_in_process(
        instance=instance, partition_key=batch, raise_on_error=False
    )


def _manifest(root: Path, asset: str, batch: str = BATCH) -> pd.DataFrame:
    return pd.read_parquet(root / "manifests" / asset / f"{batch}.parquet")


def _assert_batch_processed(root: Path, truth) -> None:
    uploads = _manifest(root, "raw_uploads")
    # Every input file exactly once, bad ones quarantined with the reason the generator planted.
    assert len(uploads) == len(truth.files)
    statuses = dict(zip(uploads["original_name"], uploads["status"]))
    reasons = dict(zip(uploads["original_name"], uploads["reason"]))
    quarantined = uploads[uploads["status"] == "quarantined"]
    assert len(quarantined) == len(truth.broken)
    codes = sorted(reason.split(":")[0] for reason in quarantined["reason"])
    assert codes == sorted(truth.broken.values())
    for duplicate in truth.duplicates:
        assert statuses[duplicate] == "duplicate"
    for image in truth.images:
        assert statuses[image.file_name] == "ok", reasons[image.file_name]

    frames = _manifest(root, "frames")
    video = truth.videos[0]
    assert (frames["kind"] == "image").sum() == len(truth.images)
    assert (frames["kind"] == "page").sum() == sum(len(pdf.pages) for pdf in truth.pdfs)
    video_times = frames.loc[frames["kind"] == "video_frame", "t"].sort_values().tolist()
    assert len(video_times) == int(video.duration)  # 1 fps
    for k, t in enumerate(video_times):
        assert abs(t - k) <= 1 / video.fps + 1e-9
    assert frames["low_light"].sum() >= 1
    assert frames.loc[frames["kind"] == "video_frame", "duration"].tolist() == [video.duration] * len(video_times)

    final = _manifest(root, "human_corrections")
    assert set(final["frame_id"]) == set(frames["frame_id"])  # every frame annotated or failed
    assert not final["reviewed"].any()
    scores = score_against_sample_truth(truth, uploads, frames, final)
    total = sum(scores.values(), OcrScore(0, 0, 0, 0))
    # Spaces counted, as a trainer sees the labels (PP-OCRv6 small: ~99 %; PP-OCRv4 glued words: ~95 %).
    assert total.accuracy >= 0.97, scores
    assert total.spurious_regions == 0, "window-control dots and other symbols must not become text"
    login = uploads.loc[uploads["original_name"] == "screen_1_login.png", "upload_id"].iloc[0]
    login_frame = frames.loc[frames["upload_id"] == login, "frame_id"].iloc[0]
    login_row = final[(final["frame_id"] == login_frame) & (final["task"] == "ocr")].iloc[0]
    login_texts = [region["text"] for region in json.loads(login_row["payload"])["regions"]]
    assert "欢迎回来 Welcome back" in login_texts and "用户名 Username" in login_texts, login_texts

    export_dir = root / "exports" / BATCH
    lines = (export_dir / "qwen_ocr.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(frames)
    sample_line = json.loads(lines[0])
    assert all((export_dir / image).is_file() for image in sample_line["image"])
    assert sample_line["conversations"][0]["value"].count("<image>") == 1
    report = json.loads((root / "exports" / "reports" / f"{BATCH}.json").read_text())
    assert report["headline"]["mean_iou"] is None  # nobody double-annotated yet
    assert report["figures"]["ai_failure_rate"] == 0.0
    coco = COCO(str(export_dir / "annotations" / "instances_ocr.json"))
    assert (export_dir / "annotations.csv").exists() and (export_dir / "label_studio_ocr.json").exists()
    assert len(coco.getImgIds()) == len(frames)
    assert len(coco.getAnnIds()) > 0


@pytest.mark.slow  # the whole graph with real OCR
def test_whole_graph_on_ephemeral_instance(tmp_path, sample):
    root = _root_with_batch(tmp_path, sample)
    instance = DagsterInstance.ephemeral()
    result = _run(root, instance)
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "raw_uploads_gate": True,
        "frames_gate": True,
        "ai_annotations_gate": True,
        "human_corrections_gate": True,
        "qc_gate": True,
    }
    _assert_batch_processed(root, sample[1])

    augmented = root / "manifests" / "augmented_dataset" / BATCH
    lineage = pd.read_parquet(augmented / "lineage.parquet")
    assert set(lineage["pipeline"]) >= {"geometric", "color", "noise"}

    defs = build_definitions(storage_root=str(root), database_url=sqlite_url(root / "annotations.db"))
    first = defs.resolve_job_def("release_dataset").execute_in_process(instance=instance)
    assert first.success
    release_dir = Path(first.output_for_node("release")["path"].iloc[0])
    frames = pd.read_parquet(release_dir / "frames.parquet")
    assert frames.groupby("upload_id")["split"].nunique().max() == 1  # a video never spans two splits
    assert (release_dir / "README.md").read_text().count(BATCH) >= 1
    assert (release_dir / "qwen_ocr.jsonl").exists()
    again = defs.resolve_job_def("release_dataset").execute_in_process(instance=instance)
    assert again.output_for_node("release")["version"].iloc[0] == release_dir.name
    assert bool(again.output_for_node("release")["created"].iloc[0]) is False  # immutable: found, not rewritten


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.postgres
def test_whole_graph_on_postgres_instance(tmp_path, sample, postgres_url, monkeypatch):
    """The deploy/dagster.yaml instance config, on the real PostgreSQL server."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_URL", postgres_url.replace("postgresql+psycopg2://", "postgresql://"))
    root = _root_with_batch(tmp_path, sample)
    with DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = _run(root, instance)
        assert result.success
        records = instance.get_run_records()
        assert [r.dagster_run.run_id for r in records] == [result.run_id]
        assert instance.get_latest_materialization_event(AssetKey("exports")) is not None
    _assert_batch_processed(root, sample[1])


def test_deploy_config_reads_its_url_from_the_environment():
    config = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_PG_URL"}


def test_the_run_queue_is_looked_at_every_second_with_the_deployed_limits(tmp_path):
    """deploy/dagster.yaml (as the operations tests get it, on SQLite): Dagster accepts the queue's
    dequeue interval beside the concurrency section, and keeps the run limit."""
    from tests.ops_helpers import write_dagster_home

    home = write_dagster_home(tmp_path / "home", postgres=False)
    with DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_coordinator.dequeue_interval_seconds == 1
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 4


def test_inbox_sensor_adds_partitions_once(tmp_path, sample):
    root = _root_with_batch(tmp_path, sample)
    mark_ready(root / "inbox" / BATCH)
    (root / "inbox" / "still-copying").mkdir()
    (root / "inbox" / "still-copying" / "a.png").write_bytes(b"x")
    instance = DagsterInstance.ephemeral()
    resources = {"storage": StorageResource(root=str(root))}
    result = inbox_sensor(build_sensor_context(instance=instance, resources=resources))
    assert [r.partition_key for r in result.run_requests] == [BATCH]
    assert [r.run_key for r in result.run_requests] == [f"inbox:{BATCH}"]
    assert result.dynamic_partitions_requests[0].partition_keys == [BATCH]
    instance.add_dynamic_partitions("batches", [BATCH])
    again = inbox_sensor(build_sensor_context(instance=instance, resources=resources))
    assert "no new complete batch" in again.skip_message


def test_nightly_schedule_requests_every_batch(tmp_path):
    # Schedule contexts need an instance with a reference on disk, unlike an ephemeral one.
    instance = DagsterInstance.local_temp(tempdir=str(tmp_path))
    instance.add_dynamic_partitions("batches", ["a", "b"])
    context = build_schedule_context(instance=instance, scheduled_execution_time=datetime(2026, 11, 26, 3, 0))
    requests = list(nightly_reexport(context))
    assert sorted(r.partition_key for r in requests) == ["a", "b"]
    assert len({r.run_key for r in requests}) == 2


def test_corrections_sensor_reruns_reviewed_batches_once(tmp_path):
    from sqlalchemy.orm import Session

    from assets.automation import corrections_sensor
    from qwen_dataset.db.engine import make_engine
    from qwen_dataset.db.models import HumanAnnotation, ReviewState
    from resources.database import AnnotationDatabaseResource

    url = sqlite_url(tmp_path / "annotations.db")
    engine = make_engine(url)
    with Session(engine) as session:
        for batch, state in (("b1", ReviewState.FINAL), ("b2", ReviewState.DRAFT), ("gone", ReviewState.FINAL)):
            session.add(
                HumanAnnotation(
                    annotation_id=f"a-{batch}",
                    frame_id="f",
                    upload_id="u",
                    batch=batch,
                    task="ocr",
                    author="ann1",
                    state=state,
                )
            )
        session.commit()
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("batches", ["b1", "b2"])
    resources = {"annotation_db": AnnotationDatabaseResource(url=url)}
    result = corrections_sensor(build_sensor_context(instance=instance, resources=resources))
    assert [r.partition_key for r in result.run_requests] == ["b1"]  # drafts wait; unknown batches are skipped
    again = corrections_sensor(build_sensor_context(instance=instance, resources=resources, cursor=result.cursor))
    assert "no review finalized" in again.skip_message
    with Session(engine) as session:  # a reviewer sends the final work of b1 back
        session.get(HumanAnnotation, "a-b1").state = ReviewState.DRAFT
        session.commit()
    sent_back = corrections_sensor(build_sensor_context(instance=instance, resources=resources, cursor=result.cursor))
    assert [r.partition_key for r in sent_back.run_requests] == ["b1"]
