"""deploy/run_workers.py without services: what a worker's parent loads, and the instance config."""

from __future__ import annotations

import subprocess
import sys

import pytest
from dagster import DagsterInstance

from tests.ops_helpers import REDIS_URL, REPO, write_dagster_home

PROJECT_PACKAGES = ("qwen_dataset", "assets", "resources", "tests")


def test_a_workers_parent_loads_the_libraries_but_none_of_the_projects_code():
    """What the parent imports, every forked run inherits as it was at the worker's start: the
    project's own modules must be imported by each run's child, so that an edit reaches the next run."""
    script = (
        "import sys, deploy.run_workers as w; w._warm_up(); "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({PROJECT_PACKAGES!r}))); "
        "print('great_expectations' in sys.modules, 'pandas' in sys.modules, 'cv2' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    assert out == ["[]", "True True True"]


def test_the_worker_app_needs_the_queue_url(monkeypatch):
    from deploy.run_workers import worker_app

    monkeypatch.delenv("QWEN_RUN_QUEUE_URL", raising=False)
    with pytest.raises(RuntimeError, match="QWEN_RUN_QUEUE_URL is not set"):
        worker_app()


def test_the_deployed_instance_with_run_workers_yaml_starts_runs_through_the_warm_workers(tmp_path, monkeypatch):
    """deploy/dagster.yaml followed by deploy/run_workers.yaml (the README's `cat`): Dagster accepts
    the launcher and its settings beside the queue, pools and run monitoring."""
    monkeypatch.setenv("QWEN_RUN_QUEUE_URL", REDIS_URL)
    home = write_dagster_home(tmp_path / "home", postgres=False, run_queue="dagster")
    with DagsterInstance.from_config(str(home)) as instance:
        launcher = instance.run_launcher
        assert type(launcher).__name__ == "RunWorkerLauncher"
        assert (launcher.broker, launcher.backend, launcher.default_queue) == (REDIS_URL, REDIS_URL, "dagster")
        assert instance.run_coordinator.dequeue_interval_seconds == 1
        assert instance.run_monitoring_settings["poll_interval_seconds"] == 10


def test_run_monitoring_trusts_the_childs_heartbeat_over_celerys_task_state(tmp_path, monkeypatch):
    """A STARTED run whose child beats is running even when Redis lost its task state (PENDING);
    one whose heartbeat is gone for the grace period failed (its whole worker died)."""
    import redis
    from dagster import DagsterRun, DagsterRunStatus
    from dagster._core.launcher import WorkerStatus

    import deploy.run_workers as workers

    monkeypatch.setenv("QWEN_RUN_QUEUE_URL", REDIS_URL)
    home = write_dagster_home(tmp_path / "home", postgres=False, run_queue="heartbeat-test")
    run = DagsterRun(
        job_name="process_batch",
        run_id=f"heartbeat-{tmp_path.name}",
        status=DagsterRunStatus.STARTED,
        tags={"dagster-celery/task_id": f"no-such-task-{tmp_path.name}"},  # Celery knows nothing: PENDING
    )
    key = workers.HEARTBEAT_KEY.format(run_id=run.run_id)
    with DagsterInstance.from_config(str(home)) as instance:
        launcher = instance.run_launcher
        with workers._heartbeat(REDIS_URL, run.run_id):
            assert redis.Redis.from_url(REDIS_URL).exists(key)
            assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
        assert not redis.Redis.from_url(REDIS_URL).exists(key)  # removed when the run ends
        assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING  # within the grace
        monkeypatch.setattr(workers, "HEARTBEAT_GRACE_S", 0.0)
        verdict = launcher.check_run_worker_health(run)
        assert verdict.status == WorkerStatus.FAILED and "sent no heartbeat" in verdict.msg
