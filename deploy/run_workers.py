"""Warm run workers: Dagster runs started as Celery tasks, on workers that loaded the libraries once.

Dagster's default launcher spawns a fresh interpreter for every run: ``import dagster``, pandas,
pyarrow, OpenCV, PyAV, Great Expectations (3–4 s alone) and the SQL stack, on every launch. Here a
long-lived worker (``make run-workers``) imports those libraries once, then forks a child per run
(``--max-tasks-per-child 1``): each run still gets its own process, and imports the project's code
itself, so an edited asset is what the next run executes. Only a library upgrade needs a worker
restart.

Deployment (README, "Warm run workers"): append ``deploy/run_workers.yaml`` to the instance's
``dagster.yaml``, point ``QWEN_RUN_QUEUE_URL`` at a Redis database for the webserver, the daemon
and the workers alike, and start one or more workers (``python -m deploy.run_workers``) with the
same ``DAGSTER_HOME`` and storage settings as the code location.

This module imports Dagster and Celery only, never the project: what a worker's parent process
imports, every run inherits as it was at the worker's start.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
from collections.abc import Mapping
from typing import Any

from celery import Celery, signals
from dagster import DagsterInstance, DagsterRun
from dagster._cli.api import _execute_run_command_body, _resume_run_command_body
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._grpc.types import ExecuteRunArgs, ResumeRunArgs
from dagster._serdes import unpack_value
from dagster._utils.interrupts import capture_interrupts
from dagster_celery.config import DEFAULT_CONFIG, TASK_EXECUTE_JOB_NAME, TASK_RESUME_JOB_NAME
from dagster_celery.launcher import CeleryRunLauncher
from dagster_celery.make_app import make_app
from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG

QUEUE_URL_ENV = "QWEN_RUN_QUEUE_URL"
DEFAULT_QUEUE = "dagster"  # dagster_celery's app declares this queue (routing key "dagster.#")
PING_TIMEOUT_S = 2.0

# What every run of the graph imports from outside the project: loaded once in the worker's parent
# process, shared by its forked children. Great Expectations is most of it (the gates).
WARM_MODULES = (
    "dagster._core.execution.api",
    "dagster._core.storage.sqlite_storage",
    "dagster_postgres",
    "pandas",
    "numpy",
    "pyarrow",
    "pyarrow.parquet",
    "orjson",
    "av",
    "cv2",
    "pypdfium2",
    "PIL.Image",
    "fsspec",
    "upath",
    "jinja2",
    "pydantic",
    "sqlalchemy",
    "sqlalchemy.orm",
    "alembic",
    "alembic.runtime.migration",
    "great_expectations",
    "scipy.optimize",
    "matplotlib",
    "rapidfuzz",
)


def queue_url() -> str:
    url = os.environ.get(QUEUE_URL_ENV, "")
    if not url:
        raise RuntimeError(
            f"{QUEUE_URL_ENV} is not set: set it to the Redis database the run workers share with the "
            f"webserver and the daemon, e.g. {QUEUE_URL_ENV}=redis://127.0.0.1:6379/0"
        )
    return url


def worker_name(queue: str) -> str:
    """The worker's Celery node name: the launcher looks for workers by the queue they serve."""
    return f"{queue}@%h"


class RunWorkerLauncher(CeleryRunLauncher):
    """dagster_celery's launcher, which a run's failure and a missing worker explain.

    - A launch with no worker serving the queue fails the run at once with what to start, instead
      of leaving it in STARTING until run monitoring times it out.
    - Termination reports the run as canceling first (as Dagster's default launcher does) and sends
      the worker's child SIGTERM, which the run's interrupt handling turns into a clean cancel.
    - A worker that died (killed, out of memory) fails its run with Celery's reason.
    """

    def launch_run(self, context: LaunchRunContext) -> None:
        replies = self.celery.control.ping(
            timeout=PING_TIMEOUT_S, limit=1, pattern=f"{self.default_queue}@*", matcher="glob"
        )
        if not replies:
            raise RuntimeError(
                f"no run worker serves the queue {self.default_queue!r} on {self.broker}: start one "
                f"(`make run-workers`, or `python -m deploy.run_workers --queue {self.default_queue}`) with the "
                f"same DAGSTER_HOME and {QUEUE_URL_ENV}, then launch the run again"
            )
        super().launch_run(context)

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished or DAGSTER_CELERY_TASK_ID_TAG not in run.tags:
            return False
        self._instance.report_run_canceling(run)
        self.celery.AsyncResult(run.tags[DAGSTER_CELERY_TASK_ID_TAG]).revoke(terminate=True, signal="SIGTERM")
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        task_id = run.tags.get(DAGSTER_CELERY_TASK_ID_TAG)
        if task_id is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the run has no Celery task yet")
        result = self.celery.AsyncResult(task_id)
        state = result.state
        if state == "FAILURE":
            return CheckRunHealthResult(WorkerStatus.FAILED, f"the run worker failed: {result.result!r}")
        if state == "REVOKED":
            return CheckRunHealthResult(WorkerStatus.FAILED, "the run's Celery task was revoked (terminated)")
        return super().check_run_worker_health(run)


def _app_args(queue: str, url: str) -> dict[str, Any]:
    return {
        "broker": url,
        "backend": url,
        "include": [],
        "config_source": DEFAULT_CONFIG,
        "task_default_queue": queue,
    }


def _run_in_child(body: Any, args: ExecuteRunArgs | ResumeRunArgs) -> int:
    # As `dagster api execute_run` does: SIGTERM/SIGINT become Dagster's interrupt, so a
    # terminated run ends CANCELED with its steps' events, not as a killed process.
    with capture_interrupts(), DagsterInstance.get() as instance:
        # Dagster opens a new PostgreSQL connection for every query of a run worker (NullPool),
        # hundreds per run: an empty batch's steps took 5.3 s that way, 1.5 s pooled (bench_dagster_overhead).
        # A child serves one run and exits,
        # so its storages keep their connections for the run, as the webserver's do (no statement
        # timeout, as before; nothing changes on SQLite).
        instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=8)
        return body(
            instance=instance,
            run_id=args.run_id,
            write_stream_fn=lambda _event: None,
            set_exit_code_on_failure=args.set_exit_code_on_failure is not False,
        )


def worker_app(queue: str = DEFAULT_QUEUE, url: str | None = None) -> Celery:
    """The workers' Celery app (on ``url``, default ``$QWEN_RUN_QUEUE_URL``): the launcher's task
    names, run through :func:`_run_in_child`."""
    app = make_app(app_args=_app_args(queue, url or queue_url()))

    @app.task(bind=True, name=TASK_EXECUTE_JOB_NAME, track_started=True)
    def execute_job(_task: Any, execute_job_args_packed: Mapping[str, Any]) -> int:
        return _run_in_child(_execute_run_command_body, unpack_value(execute_job_args_packed, ExecuteRunArgs))

    @app.task(bind=True, name=TASK_RESUME_JOB_NAME, track_started=True)
    def resume_job(_task: Any, execute_job_args_packed: Mapping[str, Any]) -> int:
        return _run_in_child(_resume_run_command_body, unpack_value(execute_job_args_packed, ResumeRunArgs))

    return app


@signals.worker_init.connect
def _warm_up(**_kwargs: Any) -> None:
    """In the worker's parent, before it forks its children: load the libraries every run uses."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    for name in WARM_MODULES:
        importlib.import_module(name)
    # The children share these pages copy-on-write; without freezing, the first garbage collection
    # in each child would touch (and so copy) every object the parent loaded.
    gc.freeze()


def worker_argv(queue: str = DEFAULT_QUEUE, concurrency: int = 4) -> list[str]:
    """The Celery worker's arguments: one child per run, named after the queue it serves."""
    return [
        "worker",
        f"--queues={queue}",
        f"--hostname={worker_name(queue)}",
        f"--concurrency={concurrency}",
        "--max-tasks-per-child=1",
        "--loglevel=INFO",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Start a warm run worker (README, 'Warm run workers').")
    parser.add_argument("--queue", default=DEFAULT_QUEUE, help="the launcher's default_queue (deploy/run_workers.yaml)")
    parser.add_argument("--concurrency", type=int, default=4, help="runs at once (deploy/dagster.yaml: 4)")
    args = parser.parse_args(argv)
    worker_app(args.queue).worker_main(worker_argv(args.queue, args.concurrency))


if __name__ == "__main__":
    main()
