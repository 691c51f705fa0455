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
same environment as the code location (the instance's settings travel with each run).

This module imports Dagster and Celery only, never the project: what a worker's parent process
imports, every run inherits as it was at the worker's start.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import glob
import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from celery import Celery, signals
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus
from dagster._cli.api import _execute_run_command_body, _resume_run_command_body
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._grpc.types import ExecuteRunArgs, ResumeRunArgs
from dagster._serdes import unpack_value
from dagster._utils.interrupts import capture_interrupts
from dagster_celery.config import DEFAULT_CONFIG, TASK_EXECUTE_JOB_NAME, TASK_RESUME_JOB_NAME
from dagster_celery.launcher import CeleryRunLauncher
from dagster_celery.make_app import make_app
from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG, DAGSTER_CELERY_TASK_ID_TAG
from kombu.utils.url import maybe_sanitize_url

QUEUE_URL_ENV = "QWEN_RUN_QUEUE_URL"
DEFAULT_QUEUE = "dagster"  # dagster_celery's app declares this queue (routing key "dagster.#")
PING_TIMEOUT_S = 2.0
WORKER_GRACE_S = 120.0  # how long after a worker last answered a launch still trusts the queue
# A run's child refreshes this key while it runs; run monitoring fails a STARTED run whose key has
# been missing for HEARTBEAT_GRACE_S (its worker died whole, or its child hangs outside Python).
HEARTBEAT_KEY = "qwen-run-heartbeat:{run_id}"
HEARTBEAT_INTERVAL_S = 5.0
HEARTBEAT_TTL_S = 30
HEARTBEAT_GRACE_S = 30.0

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


def worker_answers(celery: Celery, queue: str, timeout: float = PING_TIMEOUT_S) -> bool:
    """Whether a worker serving ``queue`` answers a ping (its main process answers even when busy)."""
    return bool(celery.control.ping(timeout=timeout, limit=1, pattern=f"{glob.escape(queue)}@*", matcher="glob"))


class RunWorkerLauncher(CeleryRunLauncher):
    """dagster_celery's launcher, which a run's failure and a missing worker explain.

    - A launch with no worker serving the queue fails the run at once with what to start, instead
      of leaving it in STARTING until run monitoring times it out.
    - Termination reports the run as canceling first (as Dagster's default launcher does) and sends
      the worker's child SIGTERM, which the run's interrupt handling turns into a clean cancel.
    - A worker child that died (killed, out of memory) fails its run with Celery's reason; a run
      whose child stopped sending its heartbeat (the whole worker killed, its host lost) fails
      after :data:`HEARTBEAT_GRACE_S`, instead of staying STARTED while Celery's state says so.
    - A worker that is restarting (draining, or just started) does not answer pings for a few
      seconds: while one answered within :data:`WORKER_GRACE_S`, launches go to the queue anyway.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._heartbeat_missing_since: dict[str, float] = {}
        self._answered_at: dict[str, float] = {}  # queue -> when a worker serving it last answered

    def launch_run(self, context: LaunchRunContext) -> None:
        queue = context.dagster_run.tags.get(DAGSTER_CELERY_QUEUE_TAG, self.default_queue)  # where the task goes
        now = time.monotonic()
        if worker_answers(self.celery, queue):
            self._answered_at[queue] = now
        elif now - self._answered_at.get(queue, -WORKER_GRACE_S) >= WORKER_GRACE_S:
            raise RuntimeError(
                f"no run worker serves the queue {queue!r} on {maybe_sanitize_url(self.broker)}: start one "
                f"(`make run-workers`, or `python -m deploy.run_workers --queue {queue}`) with the "
                f"same {QUEUE_URL_ENV}, then launch the run again"
            )
        super().launch_run(context)

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished or DAGSTER_CELERY_TASK_ID_TAG not in run.tags:
            return False
        result = self.celery.AsyncResult(run.tags[DAGSTER_CELERY_TASK_ID_TAG])
        self._instance.report_run_canceling(run)
        result.revoke(terminate=True, signal="SIGTERM")
        if run.status == DagsterRunStatus.STARTING and result.state in ("PENDING", "REVOKED"):
            # No child has it: nothing will ever report the cancel (a child that takes it later sees CANCELED
            # and does not execute), so it is done now instead of after run monitoring's cancel timeout.
            self._instance.report_run_canceled(run, "Canceled before a run worker took the run.")
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
        if state in ("PENDING", "STARTED"):
            # Monitoring asks only for STARTED runs: the child did start. The task's state alone is
            # not evidence: Redis may have lost it (restart, flush, eviction, result_expires: PENDING),
            # and a worker that died whole leaves STARTED behind. The child's heartbeat is.
            alive = self.celery.backend.client.exists(HEARTBEAT_KEY.format(run_id=run.run_id))
            if alive:
                self._heartbeat_missing_since.pop(run.run_id, None)
                return CheckRunHealthResult(WorkerStatus.RUNNING)
            since = self._heartbeat_missing_since.setdefault(run.run_id, time.monotonic())
            if time.monotonic() - since < HEARTBEAT_GRACE_S:
                return CheckRunHealthResult(WorkerStatus.RUNNING, "no heartbeat yet; within the grace period")
            return CheckRunHealthResult(
                WorkerStatus.FAILED,
                f"the run's worker sent no heartbeat for {HEARTBEAT_GRACE_S:.0f} s (task state {state}): "
                "its worker died (host, OOM, kill -9) or was lost",
            )
        return super().check_run_worker_health(run)


def _app_args(queue: str, url: str) -> dict[str, Any]:
    return {
        "broker": url,
        "backend": url,
        "include": [],
        "config_source": DEFAULT_CONFIG,
        "task_default_queue": queue,
    }


@contextlib.contextmanager
def _heartbeat(url: str, run_id: str) -> Iterator[None]:
    """While the run's child runs: a key on the queue's Redis, refreshed every few seconds, that
    the launcher's health check trusts over Celery's task state (which Redis can lose or keep)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    key = HEARTBEAT_KEY.format(run_id=run_id)
    stop = threading.Event()

    def beat_once() -> None:
        with contextlib.suppress(redis.RedisError):
            client.set(key, os.getpid(), ex=HEARTBEAT_TTL_S)

    def beat() -> None:
        while not stop.wait(HEARTBEAT_INTERVAL_S):
            beat_once()

    beat_once()  # before the run starts, so the first health check already finds it

    thread = threading.Thread(target=beat, name="run-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        with contextlib.suppress(redis.RedisError):
            client.delete(key)


def _instance(args: ExecuteRunArgs | ResumeRunArgs) -> DagsterInstance:
    """The launcher's instance, from the ref the task carries: a worker started with another
    DAGSTER_HOME still reports the run where the webserver looks (else the run sat in STARTING)."""
    return DagsterInstance.from_ref(args.instance_ref) if args.instance_ref is not None else DagsterInstance.get()


def _run_in_child(body: Any, args: ExecuteRunArgs | ResumeRunArgs, url: str) -> int:
    # As `dagster api execute_run` does: SIGTERM/SIGINT become Dagster's interrupt, so a
    # terminated run ends CANCELED with its steps' events, not as a killed process.
    with capture_interrupts(), _heartbeat(url, args.run_id), _instance(args) as instance:
        # Dagster opens a new PostgreSQL connection for every query of a run worker (NullPool),
        # hundreds per run: an empty batch's steps took 5.3 s that way, 1.5 s pooled
        # (bench_dagster_overhead). A child serves one run and exits, so its storages keep their
        # connections for the run, as the webserver's do (no statement timeout; nothing changes on SQLite).
        instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=8)
        # A pooled connection the server or the network closed while a long step ran (idle timeout,
        # failover) would fail the run's next event write: test each one as it is taken from the pool.
        for storage in (instance.run_storage, instance.event_log_storage, instance.schedule_storage):
            engine = getattr(storage, "_engine", None)
            if engine is not None and engine.dialect.name == "postgresql":
                engine.pool._pre_ping = True  # SQLAlchemy's pool_pre_ping, which optimize_for_webserver does not pass
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
        return _run_in_child(
            _execute_run_command_body, unpack_value(execute_job_args_packed, ExecuteRunArgs), app.conf.result_backend
        )

    @app.task(bind=True, name=TASK_RESUME_JOB_NAME, track_started=True)
    def resume_job(_task: Any, execute_job_args_packed: Mapping[str, Any]) -> int:
        return _run_in_child(
            _resume_run_command_body, unpack_value(execute_job_args_packed, ResumeRunArgs), app.conf.result_backend
        )

    return app


_worker_pid = os.getpid()  # set again in the worker's parent; its children inherit it


@signals.worker_init.connect
def _warm_up(**_kwargs: Any) -> None:
    """In the worker's parent, before it forks its children: load the libraries every run uses."""
    global _worker_pid
    _worker_pid = os.getpid()
    os.environ.setdefault("MPLBACKEND", "Agg")
    for name in WARM_MODULES:
        importlib.import_module(name)
    # The children share these pages copy-on-write; without freezing, the first garbage collection
    # in each child would touch (and so copy) every object the parent loaded.
    gc.freeze()


@signals.worker_process_init.connect
def _die_with_the_worker(**_kwargs: Any) -> None:
    """In each child: SIGTERM when the worker's parent dies (killed, its host shutting down).

    Dagster's interrupt handling then fails the run ("interrupted unexpectedly") instead of the
    orphan finishing it unseen after run monitoring has failed it for a worker that no longer answers.
    """
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != _worker_pid:  # the parent died before the request took effect
        os._exit(1)


def worker_argv(queue: str = DEFAULT_QUEUE, concurrency: int = 4) -> list[str]:
    """The Celery worker's arguments: one child per run, named after the queue it serves."""
    return [
        "worker",
        f"--queues={queue}",
        f"--hostname={worker_name(queue)}",
        f"--concurrency={concurrency}",
        "--max-tasks-per-child=1",
        "--disable-prefetch",
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
