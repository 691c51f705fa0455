"""The warm run workers (``deploy/run_workers.yaml``, ``deploy/run_workers.py``) as deployed.

One ``dagster-webserver``, one ``dagster-daemon`` and one run worker (``python -m
deploy.run_workers``, what ``make run-workers`` starts) on a Redis queue of the deployment's own.
The sample batch runs in the worker's forked children, one per run; a run terminated from the UI
ends CANCELED and a killed worker child fails its run with Celery's reason, both found by Dagster's
run monitoring (``deploy/dagster.yaml``); the rerun finishes the batch. With no worker listening, a
launch fails at once and says what to start; while a worker restarts, launches wait for it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pandas as pd
import pytest

from tests.fixture_hold import HOLD_FILE
from tests.ops_helpers import (
    add_partition,
    assert_run_succeeded,
    copy_batch,
    deployment,
    leftover_temp_files,
    reexecute,
    run_errors,
    run_records,
    run_status,
    sample_batch,
    steps_by_outcome,
    submit_batch,
    terminate_run,
    wait_for,
    wait_for_run,
)
from tests.test_operations_crash import held_worker, worker_pids

pytestmark = pytest.mark.slow  # starts real Dagster services and a Celery worker: tens of seconds
BATCH = "workers-sample"
TASK_TAG = "dagster-celery/task_id"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return sample_batch(tmp_path_factory)


def celery_children(worker_pid: int) -> set[int]:
    """Pids of the processes the run worker forked (its pool's children)."""
    children = Path(f"/proc/{worker_pid}/task/{worker_pid}/children")
    return {int(pid) for pid in children.read_text().split()} if children.exists() else set()


def hold(services, run_id: str, hold_dir: Path) -> dict:
    return wait_for(
        "ai_annotations to hold mid-batch",
        lambda: held_worker(services, run_id, hold_dir),
        150,
        services.log_tail,
        0.2,
    )


@pytest.mark.postgres
def test_sample_batch_runs_in_a_fresh_child_of_the_warm_worker_on_postgres(tmp_path, sample, postgres_url):
    folder, truth = sample
    root = tmp_path / "storage"
    copy_batch(folder, root, BATCH)
    with deployment(tmp_path, root, pg_url=postgres_url, run_workers=True) as services:
        add_partition(services, BATCH)
        first = submit_batch(services, BATCH)
        assert_run_succeeded(services, first)
        again = submit_batch(services, BATCH)
        assert_run_succeeded(services, again)
        records = run_records(services)
        assert TASK_TAG in records[first]["tags"] and TASK_TAG in records[again]["tags"]  # Celery ran them
        first_pids, again_pids = worker_pids(services, first), worker_pids(services, again)
        assert len(first_pids) == 1 and len(again_pids) == 1
        assert first_pids != again_pids
        # A process per run (--max-tasks-per-child 1): the first run's child is gone, not kept for the next.
        wait_for(
            "the first run's child to exit",
            lambda: not any(Path(f"/proc/{pid}").exists() for pid in first_pids),
            30,
            services.log_tail,
            0.2,
        )
        worker = services.processes[-1]
        assert not (first_pids | again_pids) & {worker.pid}  # the runs ran in children, not the worker itself

        # A worker restarting: launches made while none answers wait in the queue for the next one.
        worker.send_signal(signal.SIGTERM)  # warm shutdown: the worker finishes its runs, then exits
        worker.wait(timeout=60)
        services.processes.remove(worker)
        waiting = submit_batch(services, BATCH)
        wait_for(
            "the run to reach the queue", lambda: run_status(services, waiting) == "STARTING", 30, services.log_tail
        )
        services.start_run_worker()
        assert_run_succeeded(services, waiting)

        # A queue no worker has ever served: the launch fails at once and names what to start.
        orphan = submit_batch(services, BATCH, tags={"dagster-celery/queue": "nobody-serves-this"})
        assert wait_for_run(services, orphan, timeout=60) == "FAILURE"
        errors = run_errors(services, orphan)
        assert "no run worker serves the queue 'nobody-serves-this'" in errors and "make run-workers" in errors, errors

    uploads = pd.read_parquet(root / "manifests" / "raw_uploads" / f"{BATCH}.parquet")
    assert len(uploads) == len(truth.files)  # one row per file, after three runs of the batch
    frames = pd.read_parquet(root / "manifests" / "frames" / f"{BATCH}.parquet")
    assert (frames["kind"] == "image").sum() == len(truth.images)
    assert (frames["kind"] == "page").sum() == sum(len(pdf.pages) for pdf in truth.pdfs)
    annotations = pd.read_parquet(root / "manifests" / "ai_annotations" / f"{BATCH}.parquet")
    assert sorted(annotations["frame_id"]) == sorted(frames["frame_id"])  # every frame annotated once
    assert (annotations["status"] == "ok").all()
    jsonl = (root / "exports" / BATCH / "qwen_ocr.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(jsonl) == len(frames)
    assert leftover_temp_files(root) == []


def test_terminated_and_killed_runs_end_with_their_reason_then_the_rerun_finishes(tmp_path, sample):
    folder, _ = sample
    root = tmp_path / "storage"
    copy_batch(folder, root, BATCH)
    hold_dir = tmp_path / "hold"
    hold_dir.mkdir()
    (hold_dir / HOLD_FILE).touch()
    with deployment(tmp_path, root, run_workers=True, extra_env={"QWEN_FIXTURE_HOLD_DIR": str(hold_dir)}) as services:
        worker = services.processes[-1]
        add_partition(services, BATCH)

        terminated = submit_batch(services, BATCH)
        held = hold(services, terminated, hold_dir)
        assert held["pid"] in worker_pids(services, terminated) and held["pid"] in celery_children(worker.pid)
        terminate_run(services, terminated)
        assert wait_for_run(services, terminated, timeout=120) == "CANCELED", run_errors(services, terminated)
        (hold_dir / "annotating.json").unlink()

        killed = submit_batch(services, BATCH)
        held = hold(services, killed, hold_dir)
        os.kill(held["pid"], signal.SIGKILL)
        assert wait_for_run(services, killed, timeout=120) == "FAILURE"
        errors = run_errors(services, killed)
        assert "the run worker failed" in errors and "SIGKILL" in errors, errors

        (hold_dir / HOLD_FILE).unlink()
        resumed = reexecute(services, killed, "FROM_FAILURE")
        assert_run_succeeded(services, resumed)
        steps = steps_by_outcome(services, resumed)
        assert "raw_uploads" not in steps and "ExecutionStepSuccessEvent" in steps["exports"]
        assert worker.poll() is None  # the worker outlived its killed child
    assert leftover_temp_files(root) == []
