"""A run worker killed mid-batch: Dagster marks the run failed, a rerun finishes the batch whole.

The fixture backend holds ``ai_annotations`` after the first frame of the sample batch and
reports its pid; the test checks from the run's event log that this is the run worker (the
in-process executor runs every step there) and that ``raw_uploads`` and ``frames`` are done
while ``ai_annotations`` is running, then SIGKILLs it. The code server sees the dead worker and
fails the run. "Re-execute from failure" (the run page's button, here its GraphQL mutation)
resumes at ``ai_annotations``; a fresh run of the batch (what the sensor or a backfill does)
repeats everything. After each step nothing under the storage root is torn: no ``*.tmp`` file,
every Parquet/JSON file parses, ids are unique in every manifest and ``raw_uploads`` has exactly
one row per file of the inbox folder.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pandas as pd
import pytest

from tests.fixture_hold import HELD_MARKER, HOLD_FILE
from tests.ops_helpers import (
    add_partition,
    assert_run_succeeded,
    copy_batch,
    dagster_dev,
    leftover_temp_files,
    pool_usage,
    reexecute,
    run_errors,
    run_events,
    run_status,
    sample_batch,
    steps_by_outcome,
    submit_batch,
    unreadable_files,
    wait_for,
    wait_for_run,
)

pytestmark = pytest.mark.slow  # starts real Dagster services: tens of seconds
BATCH = "crash-sample"
# The column that identifies a row of each manifest.
PRIMARY_IDS = {
    "raw_uploads": "original_name",
    "frames": "frame_id",
    "ai_annotations": "annotation_id",
    "human_corrections": "annotation_id",
    "augmented_dataset/frames": "frame_id",
    "augmented_dataset/annotations": "annotation_id",
    "augmented_dataset/lineage": "frame_id",
}
SUCCEEDED = "ExecutionStepSuccessEvent"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return sample_batch(tmp_path_factory)


def manifest_path(root: Path, name: str) -> Path:
    asset, _, part = name.partition("/")
    folder = root / "manifests" / asset
    return folder / BATCH / f"{part}.parquet" if part else folder / f"{BATCH}.parquet"


def assert_storage_whole(root: Path) -> None:
    assert leftover_temp_files(root) == []
    assert unreadable_files(root) == []
    for name, column in PRIMARY_IDS.items():
        path = manifest_path(root, name)
        if path.exists():
            ids = pd.read_parquet(path)[column]
            assert ids.is_unique, f"{name}: duplicate {column}: {ids[ids.duplicated()].tolist()}"


def worker_pids(services, run_id: str) -> set[int]:
    """Pids of the processes that executed the run's steps, from its engine events."""
    found = set()
    for event in run_events(services, run_id):
        match = re.search(r"Executing steps in process \(pid: (\d+)\)", event.get("message") or "")
        if match:
            found.add(int(match.group(1)))
    return found


def held_worker(services, run_id: str, hold_dir: Path) -> dict | None:
    marker = hold_dir / HELD_MARKER
    if marker.exists():
        return json.loads(marker.read_text())
    status = run_status(services, run_id)
    assert status in {"QUEUED", "NOT_STARTED", "STARTING", "STARTED"}, (
        f"the run ended {status} before ai_annotations held:\n{run_errors(services, run_id)}"
    )
    return None


def test_killed_run_worker_then_rerun_leaves_the_batch_whole(tmp_path, sample):
    folder, _ = sample
    root = tmp_path / "storage"
    inbox = copy_batch(folder, root, BATCH)
    inbox_files = sorted(p.name for p in inbox.iterdir() if p.is_file())
    hold_dir = tmp_path / "hold"
    hold_dir.mkdir()
    (hold_dir / HOLD_FILE).touch()

    with dagster_dev(tmp_path, root, extra_env={"QWEN_FIXTURE_HOLD_DIR": str(hold_dir)}) as services:
        add_partition(services, BATCH)
        crashed = submit_batch(services, BATCH)
        held = wait_for(
            "ai_annotations to hold mid-batch",
            lambda: held_worker(services, crashed, hold_dir),
            150,
            services.log_tail,
            0.2,
        )
        assert held["pid"] in worker_pids(services, crashed)  # the held process is this run's worker
        steps = steps_by_outcome(services, crashed)
        assert SUCCEEDED in steps["raw_uploads"] and SUCCEEDED in steps["frames"]
        assert "ExecutionStepStartEvent" in steps["ai_annotations"]
        assert not {SUCCEEDED, "ExecutionStepFailureEvent"} & steps["ai_annotations"]  # started, not finished

        os.kill(held["pid"], signal.SIGKILL)
        assert wait_for_run(services, crashed) == "FAILURE"
        assert "terminated by signal 9" in run_errors(services, crashed)
        assert not manifest_path(root, "ai_annotations").exists()
        assert_storage_whole(root)
        # The dead worker's slot in the prelabel pool stays claimed until run monitoring frees it
        # (deploy/dagster.yaml: 300 s after the run ended); the pool's second slot serves the rerun.
        pool = pool_usage(services, "prelabel")
        assert pool["slotCount"] == 2 and pool["claimedSlots"] == [{"runId": crashed, "stepKey": "ai_annotations"}]

        (hold_dir / HOLD_FILE).unlink()
        resumed = reexecute(services, crashed, "FROM_FAILURE")
        assert_run_succeeded(services, resumed)
        resumed_steps = steps_by_outcome(services, resumed)
        assert "raw_uploads" not in resumed_steps and "frames" not in resumed_steps
        assert SUCCEEDED in resumed_steps["ai_annotations"] and SUCCEEDED in resumed_steps["exports"]
        assert_storage_whole(root)
        first_uploads = pd.read_parquet(manifest_path(root, "raw_uploads"))

        again = submit_batch(services, BATCH)  # the whole batch once more, as a backfill would
        assert_run_succeeded(services, again)

    assert_storage_whole(root)
    uploads = pd.read_parquet(manifest_path(root, "raw_uploads"))
    assert len(uploads) == len(inbox_files)  # exactly one row per input file, after three runs
    assert sorted(uploads["upload_id"]) == sorted(first_uploads["upload_id"])
    frames = pd.read_parquet(manifest_path(root, "frames"))
    annotations = pd.read_parquet(manifest_path(root, "ai_annotations"))
    assert sorted(annotations["frame_id"]) == sorted(frames["frame_id"])  # every frame annotated once
    assert (annotations["status"] == "ok").all()
    jsonl = (root / "exports" / BATCH / "qwen_ocr.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(jsonl) == len(frames)
