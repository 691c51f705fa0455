"""Blocking gates stop exports; reruns retry only failures; code versions follow the backend."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from collections.abc import Iterator, Sequence

import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance
from PIL import Image

from qwen_dataset.db.engine import sqlite_url
from qwen_dataset.definitions import build_definitions
from qwen_dataset.prelabel.base import FrameInput, PrelabelBackend, PrelabelOutcome
from resources.prelabel import PrelabelResource

BATCH = "tiny"
CALLS: dict[str, list[str]] = defaultdict(list)  # mode -> frame ids the backend was asked about
FAILED_ONCE: set[str] = set()


class ScriptedBackend(PrelabelBackend):
    """A deterministic backend for testing the pipeline's handling of good and bad outputs."""

    tasks = ("ocr",)

    def __init__(self, mode: str, version: str) -> None:
        self.mode, self._version = mode, version

    @property
    def author(self) -> str:
        return f"scripted-{self.mode}"

    @property
    def version(self) -> str:
        return self._version

    def annotate(self, frames: Sequence[FrameInput], task: str) -> Iterator[PrelabelOutcome]:
        for frame in frames:
            CALLS[self.mode].append(frame.frame_id)
            if self.mode == "flaky" and frame.frame_id not in FAILED_ONCE and frame.width == 300:
                FAILED_ONCE.add(frame.frame_id)
                yield PrelabelOutcome(frame.frame_id, task, None, "timeout: the server did not answer", raw="")
                continue
            right = frame.width + 50 if self.mode == "outside" else frame.width - 1
            region = {
                "bbox": [1.0, 1.0, float(right), 20.0],
                "text": "Hello",
                "confidence": 0.9,
                "language": "en",
                "reading_order": 0,
            }
            yield PrelabelOutcome(frame.frame_id, task, {"regions": [region]})


class ScriptedPrelabel(PrelabelResource):
    mode: str = "good"
    version: str = "v1"

    def backend(self) -> ScriptedBackend:
        return ScriptedBackend(self.mode, self.version)

    def backend_version(self) -> str:
        return self.version


@pytest.fixture()
def root(tmp_path):
    inbox = tmp_path / "inbox" / BATCH
    inbox.mkdir(parents=True)
    Image.new("RGB", (300, 200), "white").save(inbox / "a.png")
    Image.new("RGB", (320, 240), "gray").save(inbox / "b.png")
    return tmp_path


def run(root, instance, mode: str, run_config: dict | None = None):
    defs = build_definitions(
        storage_root=str(root), database_url=sqlite_url(root / "db.sqlite"), prelabel=ScriptedPrelabel(mode=mode)
    )
    instance.add_dynamic_partitions("batches", [BATCH])
    return defs.resolve_job_def("process_batch").execute_in_process(
        instance=instance, partition_key=BATCH, raise_on_error=False, run_config=run_config or {}
    )


#: One double-blind frame is enough to gate on (the default minimum sample is 5).
ONE_FRAME = {"resources": {"quality": {"config": {"mean_iou_min_sample": 1, "ocr_accuracy_min_sample": 1}}}}


def test_failed_gate_blocks_exports_and_passes_once_fixed(root):
    instance = DagsterInstance.ephemeral()
    bad = run(root, instance, "outside")
    assert not bad.success
    gate = {e.check_name: e for e in bad.get_asset_check_evaluations()}["ai_annotations_gate"]
    assert gate.passed is False
    assert gate.metadata["failed_count"].value >= 1
    assert instance.get_latest_materialization_event(AssetKey("exports")) is None
    assert not (root / "exports" / BATCH).exists()

    good = run(root, instance, "good")
    assert good.success
    assert instance.get_latest_materialization_event(AssetKey("exports")) is not None
    assert (root / "exports" / BATCH / "qwen_ocr.jsonl").exists()


def test_rerun_retries_only_failures(root):
    instance = DagsterInstance.ephemeral()
    CALLS["flaky"].clear()
    FAILED_ONCE.clear()
    first = run(root, instance, "flaky")
    assert first.success  # a failed frame is a recorded row, not a crashed run
    annotations = pd.read_parquet(root / "manifests" / "ai_annotations" / f"{BATCH}.parquet")
    assert sorted(annotations["status"]) == ["failed", "ok"]
    assert "timeout" in annotations.loc[annotations["status"] == "failed", "error"].iloc[0]
    assert len(CALLS["flaky"]) == 2

    CALLS["flaky"].clear()
    second = run(root, instance, "flaky")
    assert second.success
    assert CALLS["flaky"] == [annotations.loc[annotations["status"] == "failed", "frame_id"].iloc[0]]
    after = pd.read_parquet(root / "manifests" / "ai_annotations" / f"{BATCH}.parquet")
    assert after["status"].tolist() == ["ok", "ok"]
    assert after["annotation_id"].is_unique


def test_backend_version_drives_the_code_version(tmp_path):
    def versions(version: str) -> dict[str, str]:
        defs = build_definitions(
            storage_root=str(tmp_path),
            database_url=sqlite_url(tmp_path / "db"),
            prelabel=ScriptedPrelabel(version=version),
        )
        graph = defs.resolve_asset_graph()
        return {key.to_user_string(): graph.get(key).code_version for key in graph.get_all_asset_keys()}

    one, two = versions("model-a"), versions("model-b")
    changed = {key for key in one if one[key] != two[key]}
    assert changed == {"ai_annotations"}


def _double_annotate(root, frame_id: str, second_box: list[float]) -> None:
    """Two annotators of a double-blind item, as the workbench stores them."""
    from sqlalchemy.orm import Session

    from qwen_dataset.db.engine import make_engine
    from qwen_dataset.db.models import HumanAnnotation, ReviewState

    engine = make_engine(sqlite_url(root / "db.sqlite"))
    with Session(engine) as session:
        session.query(HumanAnnotation).delete()
        for author, box in (("ann1", [1.0, 1.0, 100.0, 20.0]), ("ann2", second_box)):
            payload = json.dumps(
                {"regions": [{"bbox": box, "text": "Hello", "confidence": None, "language": "en", "reading_order": 0}]}
            )
            session.add(
                HumanAnnotation(
                    annotation_id=f"{author}-{frame_id}",
                    frame_id=frame_id,
                    upload_id="u",
                    batch=BATCH,
                    task="ocr",
                    author=author,
                    payload=payload,
                    state=ReviewState.SUBMITTED,
                )
            )
        session.commit()
    engine.dispose()


def test_quality_gate_blocks_exports_until_annotators_agree(root):
    instance = DagsterInstance.ephemeral()
    assert run(root, instance, "good").success
    frame_id = pd.read_parquet(root / "manifests" / "frames" / f"{BATCH}.parquet")["frame_id"].iloc[0]
    shutil.rmtree(root / "exports" / BATCH)

    _double_annotate(root, frame_id, [50.0, 1.0, 150.0, 20.0])  # IoU 1/3: they disagree
    bad = run(root, instance, "good", ONE_FRAME)
    assert not bad.success
    gate = {e.check_name: e for e in bad.get_asset_check_evaluations()}["qc_gate"]
    assert gate.passed is False and gate.severity.value == "ERROR"
    # In plain words: the figure, its value, the target, the frame and its annotators, and what to do.
    assert "mean_iou is 0.33" in gate.description and "the target is above 0.85" in gate.description
    assert "ann1 vs ann2" in gate.description and "/review/items/" in gate.description
    assert "What to do" in gate.description and "waive" in gate.description
    assert "expect_column" not in gate.description
    assert not (root / "exports" / BATCH).exists()

    # The same disagreement on one frame under the default minimum sample (5 frames) is a warning:
    # not a statistic, so not a failure; the exports go ahead.
    warned = run(root, instance, "good")
    assert warned.success
    gate = {e.check_name: e for e in warned.get_asset_check_evaluations()}["qc_gate"]
    assert gate.passed is False and gate.severity.value == "WARN"
    assert "insufficient sample" in gate.description
    assert (root / "exports" / BATCH / "qwen_ocr.jsonl").exists()
    shutil.rmtree(root / "exports" / BATCH)

    _double_annotate(root, frame_id, [1.0, 1.0, 99.0, 20.0])  # IoU 0.99
    assert run(root, instance, "good", ONE_FRAME).success
    assert (root / "exports" / BATCH / "qwen_ocr.jsonl").exists()


def test_an_admins_waiver_lets_a_failed_figure_through_with_a_warning(root):
    from sqlalchemy.orm import Session

    from qwen_dataset.db.engine import make_engine
    from qwen_dataset.db.models import Role, User
    from qwen_dataset.db.waivers import WaiverRefused, active_waivers, record_waiver, revoke_waivers

    instance = DagsterInstance.ephemeral()
    assert run(root, instance, "good").success
    frame_id = pd.read_parquet(root / "manifests" / "frames" / f"{BATCH}.parquet")["frame_id"].iloc[0]
    _double_annotate(root, frame_id, [50.0, 1.0, 150.0, 20.0])
    assert not run(root, instance, "good", ONE_FRAME).success

    engine = make_engine(sqlite_url(root / "db.sqlite"))
    with Session(engine) as session:
        admin = User(username="root", password_hash="x", role=Role.ADMIN, active=True)
        annotator = User(username="ann9", password_hash="x", role=Role.ANNOTATOR, active=True)
        session.add_all([admin, annotator])
        session.flush()
        with pytest.raises(WaiverRefused, match="not an active admin"):
            record_waiver(session, annotator, BATCH, "mean_iou", "the client accepts it")
        with pytest.raises(WaiverRefused, match="reason"):
            record_waiver(session, admin, BATCH, "mean_iou", "ok")
        record_waiver(session, admin, BATCH, "mean_iou", "one frame; the client accepts this batch", 0.333, 0.85)
        session.commit()
        admin_id = admin.id
    waived = run(root, instance, "good", ONE_FRAME)
    assert waived.success
    gate = {e.check_name: e for e in waived.get_asset_check_evaluations()}["qc_gate"]
    assert gate.severity.value == "WARN" and "waived by root" in gate.description
    assert (root / "exports" / BATCH / "qwen_ocr.jsonl").exists()

    with Session(engine) as session:
        assert revoke_waivers(session, session.get(User, admin_id), BATCH, "mean_iou") == 1
        session.commit()
    assert active_waivers(engine, BATCH) == []
    assert not run(root, instance, "good", ONE_FRAME).success
    engine.dispose()


def test_a_re_rendered_frame_is_annotated_again(root):
    """Frame ids survive a re-render (same upload, same page); the old result must not."""
    Image.new("RGB", (400, 300), "white").save(root / "inbox" / BATCH / "doc.pdf", "PDF", resolution=72.0)
    instance = DagsterInstance.ephemeral()
    CALLS["good"].clear()
    assert run(root, instance, "good").success
    assert len(CALLS["good"]) == 3  # two images and one page
    CALLS["good"].clear()
    defs = build_definitions(
        storage_root=str(root), database_url=sqlite_url(root / "db.sqlite"), prelabel=ScriptedPrelabel(mode="good")
    )
    result = defs.resolve_job_def("process_batch").execute_in_process(
        instance=instance,
        partition_key=BATCH,
        run_config={"ops": {"frames": {"config": {"pdf_dpi": 100}}}},
    )
    assert result.success
    frames = pd.read_parquet(root / "manifests" / "frames" / f"{BATCH}.parquet")
    page = frames[frames["kind"] == "page"].iloc[0]
    assert CALLS["good"] == [page["frame_id"]]  # only the page, whose picture changed, went out again
    annotations = pd.read_parquet(root / "manifests" / "ai_annotations" / f"{BATCH}.parquet")
    region = json.loads(annotations.set_index("frame_id").loc[page["frame_id"], "payload"])["regions"][0]
    assert region["bbox"][2] == page["width"] - 1  # boxes of the new rendering, not the old one
