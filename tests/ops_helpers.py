"""Running Dagster the way a data engineer does: real services as subprocesses, driven over HTTP.

:func:`dagster_dev` runs ``dagster dev`` (webserver, daemon and one code server);
:func:`deployment` runs the deployment shape, one ``dagster-webserver`` plus one
``dagster-daemon`` (or the webserver alone). Both are context managers, both serve :mod:`tests.fixtures_code_location` as
the code location :data:`LOCATION`, on a free loopback port, with a temporary ``DAGSTER_HOME``
whose ``dagster.yaml`` is ``deploy/dagster.yaml`` (with SQLite storage instead of PostgreSQL
when no database URL is given). Every service runs in its own process group, which
:meth:`DagsterServices.stop` always kills, run workers included.

The helpers poll, never sleep blindly: each wait has a deadline and fails with the tail of the
services' log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY_INSTANCE_YAML = REPO / "deploy" / "dagster.yaml"
RUN_WORKERS_YAML = REPO / "deploy" / "run_workers.yaml"
# The Redis database of the warm run workers' queues (each deployment gets its own queue name).
REDIS_URL = os.environ.get("QWEN_TEST_REDIS_URL", "redis://127.0.0.1:6379/3")
BIN = Path(sys.executable).parent
LOCATION = "qwen_dataset"
REPOSITORY = "__repository__"
FIXTURE_MODULE = "tests.fixtures_code_location"
TERMINAL_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}
STARTUP_TIMEOUT_S = 120.0
RUN_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0
DAEMONS_NEEDED = ("SENSOR", "QUEUED_RUN_COORDINATOR")

T = TypeVar("T")


class ServiceError(AssertionError):
    """A Dagster service did not start, or did not do what was asked in time."""


# --------------------------------------------------------------------------------------------
# Instance and workspace files
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def psycopg2_url(url: str) -> str:
    """``postgresql://…``: the form dagster-postgres hands to psycopg2 (not ``postgresql+psycopg2://``)."""
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


def instance_yaml(run_queue: str | None = None) -> str:
    """``deploy/dagster.yaml``, followed by ``deploy/run_workers.yaml`` serving ``run_queue`` when
    given (what the README's ``cat`` of the two files gives, with the queue's name)."""
    text = DEPLOY_INSTANCE_YAML.read_text()
    if run_queue is not None:
        launcher = RUN_WORKERS_YAML.read_text()
        assert "default_queue: dagster\n" in launcher, "deploy/run_workers.yaml names its queue differently now"
        text += launcher.replace("default_queue: dagster\n", f"default_queue: {run_queue}\n")
    return text


def write_dagster_home(home: Path, postgres: bool, run_queue: str | None = None) -> Path:
    """``home/dagster.yaml`` from ``deploy/dagster.yaml`` (+ ``deploy/run_workers.yaml`` for a
    ``run_queue``): verbatim for PostgreSQL (it reads ``DAGSTER_PG_URL``), without its ``storage``
    section (so SQLite under ``home``) otherwise. Concurrency pools, run queue limits and run
    monitoring stay as deployed."""
    home.mkdir(parents=True, exist_ok=True)
    if postgres:
        (home / "dagster.yaml").write_text(instance_yaml(run_queue))
    else:
        config = yaml.safe_load(instance_yaml(run_queue))
        config.pop("storage", None)
        (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    # The UI greets a new instance with a "Join the Dagster community" dialog that can pop up over
    # any other dialog at any moment; this marker (what its "Skip" button writes) says it was seen.
    (home / ".nux").mkdir(exist_ok=True)
    (home / ".nux" / "nux.yaml").write_text("seen: 1\n")
    return home


def create_sqlite_storage(home: Path) -> None:
    """Create the SQLite storage of a new ``home`` before any service opens it.

    The webserver, the daemon and each one's code server all open the instance as they start; on a
    fresh SQLite home each creates the schema and stamps its Alembic revision, and on a busy machine
    two of them can stamp the same table ("Version table 'alembic_version' has more than one head
    present"), so the code location fails to load.
    """
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)):
        pass


def write_workspace(path: Path) -> Path:
    """A workspace file that loads the fixture code location under the name :data:`LOCATION`."""
    workspace = {
        "load_from": [
            {
                "python_module": {
                    "module_name": FIXTURE_MODULE,
                    "working_directory": str(REPO),
                    "location_name": LOCATION,
                }
            }
        ]
    }
    path.write_text(yaml.safe_dump(workspace))
    return path


def service_env(
    home: Path, storage_root: Path, pg_url: str | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of every service, code server and run worker."""
    env = dict(os.environ)
    env.update(
        {
            "DAGSTER_HOME": str(home),
            "QWEN_STORAGE_ROOT": str(storage_root),
            "GX_ANALYTICS_ENABLED": "False",
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("DAGSTER_PG_URL", None)
    if pg_url:
        env["DAGSTER_PG_URL"] = psycopg2_url(pg_url)
    env.update(extra or {})
    return env


@contextlib.contextmanager
def temporary_database(admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database on the server of ``admin_url``, dropped afterwards; yields its URL."""
    import uuid

    from sqlalchemy import create_engine, text

    name = f"qwen_ops_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield admin_url.rsplit("/", 1)[0] + f"/{name}"
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


# --------------------------------------------------------------------------------------------
# Services
# --------------------------------------------------------------------------------------------


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    on_timeout: Callable[[], str] = lambda: "",
    interval: float = 0.25,
) -> T:
    """Call ``probe`` until it returns something other than None/False; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ServiceError(f"timed out after {timeout:.0f}s waiting for {what}\n{on_timeout()}")
        time.sleep(interval)


@dataclasses.dataclass
class DagsterServices:
    """Running Dagster services and how to talk to them."""

    port: int
    home: Path
    storage_root: Path
    log_path: Path
    processes: list[subprocess.Popen]
    with_daemon: bool
    run_queue: str | None = None  # the warm run workers' queue, when the deployment has them
    env: dict[str, str] = dataclasses.field(default_factory=dict)  # every service's environment

    def start_run_worker(self) -> subprocess.Popen:
        """One more warm run worker on the deployment's queue (as ``make run-workers``); waits until it answers."""
        assert self.run_queue is not None, "a deployment(run_workers=True) has a run queue"
        queue = self.run_queue
        with self.log_path.open("ab") as log:
            worker = _spawn(run_worker_command(queue), self.env, log)
        self.processes.append(worker)
        wait_for("the run worker", lambda: self.assert_running() or run_worker_answers(queue), 60, self.log_tail, 0.5)
        return worker

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 6000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- last {chars} chars of {self.log_path} ---\n{text[-chars:]}"

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None, timeout: float = 60.0) -> dict[str, Any]:
        """POST a GraphQL query to the webserver; fails on transport or GraphQL errors."""
        response = httpx.post(
            self.url + "/graphql", json={"query": query, "variables": dict(variables or {})}, timeout=timeout
        )
        if response.status_code >= 500 or "json" not in response.headers.get("content-type", ""):
            response.raise_for_status()
        body = response.json()
        if body.get("errors") or response.status_code != 200:
            raise ServiceError(f"GraphQL errors ({response.status_code}): {json.dumps(body.get('errors'))[:2000]}")
        return body["data"]

    def client(self):
        """dagster_graphql's client, the scripting interface a data engineer would use."""
        from dagster_graphql import DagsterGraphQLClient

        return DagsterGraphQLClient("127.0.0.1", port_number=self.port, timeout=60)

    def assert_running(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise ServiceError(f"{process.args[:3]} exited with {process.returncode}\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM each process group, then SIGKILL whatever is left of it (run workers included)."""
        for process in self.processes:
            _terminate_group(process)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _terminate_group(process: subprocess.Popen) -> None:
    pgid = process.pid  # start_new_session=True: the leader's pid is the group id
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.2)
        if process.poll() is not None and not _group_alive(pgid):
            return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def _spawn(args: list[str], env: dict[str, str], log) -> subprocess.Popen:
    return subprocess.Popen(
        args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )


def _location_loaded(services: DagsterServices) -> bool:
    services.assert_running()
    try:
        data = services.graphql(
            """{ workspaceOrError { __typename ... on Workspace { locationEntries {
            name loadStatus locationOrLoadError { __typename ... on PythonError { message stack } } } } } }""",
            timeout=10,
        )
    except (httpx.HTTPError, ServiceError):
        return False
    entries = {e["name"]: e for e in data["workspaceOrError"].get("locationEntries", [])}
    entry = entries.get(LOCATION)
    if entry is None or entry["loadStatus"] != "LOADED":
        return False
    loaded = entry["locationOrLoadError"]
    if loaded["__typename"] == "PythonError":
        raise ServiceError(f"the code location failed to load: {loaded['message']}\n{''.join(loaded['stack'])}")
    return True


def run_worker_command(queue: str) -> list[str]:
    """What ``make run-workers`` runs, for the deployment's own queue."""
    return [sys.executable, "-m", "deploy.run_workers", "--queue", queue]


def run_worker_answers(queue: str) -> bool:
    """A warm run worker serving ``queue`` answers a ping (what the launcher asks before a launch)."""
    from deploy.run_workers import worker_answers, worker_app

    return worker_answers(worker_app(queue, REDIS_URL), queue, timeout=1.0)


def _daemons_healthy(services: DagsterServices) -> bool:
    services.assert_running()
    data = services.graphql("{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }", timeout=10)
    healthy = {d["daemonType"] for d in data["instance"]["daemonHealth"]["allDaemonStatuses"] if d["healthy"]}
    return all(name in healthy for name in DAEMONS_NEEDED)


def wait_until_healthy(services: DagsterServices, timeout: float = STARTUP_TIMEOUT_S) -> DagsterServices:
    """The webserver answers, the code location is loaded and (if started) the daemon heartbeats."""
    started = time.monotonic()
    wait_for("the code location to load", lambda: _location_loaded(services), timeout, services.log_tail, 0.5)
    if services.with_daemon:
        left = max(timeout - (time.monotonic() - started), 10.0)
        wait_for("the daemon's heartbeat", lambda: _daemons_healthy(services), left, services.log_tail, 0.5)
    if services.run_queue is not None:
        queue = services.run_queue
        left = max(timeout - (time.monotonic() - started), 10.0)
        wait_for(
            "the run worker",
            lambda: services.assert_running() or run_worker_answers(queue),
            left,
            services.log_tail,
            0.5,
        )
    return services


@contextlib.contextmanager
def dagster_dev(
    tmp_path: Path, storage_root: Path, extra_env: Mapping[str, str] | None = None
) -> Iterator[DagsterServices]:
    """``dagster dev`` on a free loopback port with a fresh SQLite ``DAGSTER_HOME``; always stopped."""
    home = write_dagster_home(tmp_path / "dagster_home", postgres=False)
    workspace = write_workspace(tmp_path / "workspace.yaml")
    port = free_port()
    log_path = tmp_path / "dagster_dev.log"
    env = service_env(home, storage_root, extra=extra_env)
    with log_path.open("ab") as log:
        process = _spawn(
            [str(BIN / "dagster"), "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)], env, log
        )
    services = DagsterServices(port, home, storage_root, log_path, [process], with_daemon=True)
    try:
        yield wait_until_healthy(services)
    finally:
        services.stop()


@contextlib.contextmanager
def deployment(
    tmp_path: Path,
    storage_root: Path,
    pg_url: str | None = None,
    daemon: bool = True,
    home: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    run_workers: bool = False,
) -> Iterator[DagsterServices]:
    """One ``dagster-webserver`` (+ one ``dagster-daemon``), as deployed; always stopped.

    ``run_workers``: the instance also gets ``deploy/run_workers.yaml`` (a queue of its own on
    :data:`REDIS_URL`) and one warm run worker runs beside the services, as ``make run-workers``
    starts it. Pass the ``home`` of an earlier deployment to restart on the same instance."""
    port = free_port()
    run_queue = f"qwen-test-{port}" if run_workers else None
    if home is None:
        home = write_dagster_home(tmp_path / "dagster_home", postgres=pg_url is not None, run_queue=run_queue)
        if pg_url is None:
            create_sqlite_storage(home)
    workspace = write_workspace(tmp_path / "workspace.yaml")
    log_path = tmp_path / f"deployment-{port}.log"
    env = service_env(
        home, storage_root, pg_url, {**({"QWEN_RUN_QUEUE_URL": REDIS_URL} if run_workers else {}), **(extra_env or {})}
    )
    processes = []
    with log_path.open("ab") as log:
        processes.append(
            _spawn([str(BIN / "dagster-webserver"), "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)], env, log)
        )
        if daemon:
            processes.append(_spawn([str(BIN / "dagster-daemon"), "run", "-w", str(workspace)], env, log))
        if run_queue is not None:
            processes.append(_spawn(run_worker_command(run_queue), env, log))
    services = DagsterServices(
        port, home, storage_root, log_path, processes, with_daemon=daemon, run_queue=run_queue, env=env
    )
    try:
        yield wait_until_healthy(services)
    finally:
        services.stop()
        if run_queue is not None:
            forget_queue(run_queue)


def forget_queue(queue: str) -> None:
    """Delete what Celery keeps in Redis for a test's queue (its bindings and any task left in it)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    names = list(client.scan_iter(f"*{queue}*"))
    if names:
        client.delete(*names)


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------


def add_partition(services: DagsterServices, batch: str) -> None:
    """Add a batch partition through the webserver, as the UI's "Add a partition" does."""
    data = services.graphql(
        """mutation($selector: RepositorySelector!, $key: String!) {
             addDynamicPartition(repositorySelector: $selector, partitionsDefName: "batches", partitionKey: $key) {
               __typename ... on PythonError { message } ... on UnauthorizedError { message } } }""",
        {"selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}, "key": batch},
    )
    result = data["addDynamicPartition"]
    if result["__typename"] != "AddDynamicPartitionSuccess":
        raise ServiceError(f"adding partition {batch!r} failed: {result}")


def stop_sensor(services: DagsterServices, name: str) -> None:
    """Turn a sensor off, as its toggle in the UI does (the state is kept in the instance)."""
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": name}
    found = services.graphql(
        """query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
        __typename ... on Sensor { id } ... on PythonError { message } } }""",
        {"selector": selector},
    )["sensorOrError"]
    if found["__typename"] != "Sensor":
        raise ServiceError(f"no sensor {name!r} in {LOCATION}: {found}")
    stopped = services.graphql(
        """mutation($id: String!) { stopSensor(id: $id) { __typename
        ... on StopSensorMutationResult { instigationState { status } } ... on PythonError { message } } }""",
        {"id": found["id"]},
    )["stopSensor"]
    if stopped.get("instigationState", {}).get("status") != "STOPPED":
        raise ServiceError(f"stopping sensor {name!r} failed: {stopped}")


def submit_batch(
    services: DagsterServices, batch: str, job: str = "process_batch", tags: Mapping[str, str] | None = None
) -> str:
    """Launch ``job`` for one batch with dagster_graphql's client; returns the run id."""
    return services.client().submit_job_execution(
        job,
        repository_location_name=LOCATION,
        repository_name=REPOSITORY,
        tags={"dagster/partition": batch, **(tags or {})},
    )


def run_status(services: DagsterServices, run_id: str) -> str:
    return services.client().get_run_status(run_id).value


def run_errors(services: DagsterServices, run_id: str) -> str:
    """The failure messages of a run, for assertion messages."""
    data = services.graphql(
        """query($id: ID!) { logsForRun(runId: $id) { __typename ... on EventConnection { events {
             __typename ... on MessageEvent { message stepKey }
             ... on ExecutionStepFailureEvent { error { message } }
             ... on EngineEvent { error { message } }
             ... on RunFailureEvent { pipelineFailureError: error { message } } } } } }""",
        {"id": run_id},
    )
    events = data["logsForRun"].get("events", [])
    wanted = [e for e in events if "Failure" in e["__typename"] or e["__typename"] == "EngineEvent"]
    return "\n".join(
        f"{e['__typename']} {e.get('stepKey')}: {e.get('message')} "
        f"{(e.get('error') or e.get('pipelineFailureError') or {}).get('message', '')}"
        for e in wanted
    )


def wait_for_run(services: DagsterServices, run_id: str, timeout: float = RUN_TIMEOUT_S) -> str:
    """Poll the run's status until it is terminal; returns SUCCESS, FAILURE or CANCELED."""

    def terminal() -> str | None:
        services.assert_running()
        status = run_status(services, run_id)
        return status if status in TERMINAL_STATUSES else None

    return wait_for(
        f"run {run_id} to finish",
        terminal,
        timeout,
        lambda: f"status {run_status(services, run_id)}\n{run_errors(services, run_id)}\n{services.log_tail()}",
        0.5,
    )


def assert_run_succeeded(services: DagsterServices, run_id: str, timeout: float = RUN_TIMEOUT_S) -> None:
    status = wait_for_run(services, run_id, timeout)
    assert status == "SUCCESS", f"run {run_id} ended {status}:\n{run_errors(services, run_id)}"


def run_events(services: DagsterServices, run_id: str) -> list[dict[str, Any]]:
    """The run's event log: each event's type, step key, message and timestamp (ms since the epoch)."""
    data = services.graphql(
        """query($id: ID!) { logsForRun(runId: $id) { __typename ... on EventConnection { events {
             __typename ... on MessageEvent { message stepKey timestamp } } } } }""",
        {"id": run_id},
    )
    return data["logsForRun"]["events"]


def steps_by_outcome(services: DagsterServices, run_id: str) -> dict[str, set[str]]:
    """Step key -> the step event types it logged (started, succeeded, failed …)."""
    steps: dict[str, set[str]] = {}
    for event in run_events(services, run_id):
        if event.get("stepKey") and event["__typename"].startswith("ExecutionStep"):
            steps.setdefault(event["stepKey"], set()).add(event["__typename"])
    return steps


def reexecute(services: DagsterServices, run_id: str, strategy: str = "FROM_FAILURE") -> str:
    """The run page's "Re-execute from failure" / "Re-execute all" button; returns the new run id."""
    data = services.graphql(
        """mutation($params: ReexecutionParams!) { launchRunReexecution(reexecutionParams: $params) {
             __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
             ... on InvalidStepError { invalidStepKey } ... on RunConflict { message } } }""",
        {"params": {"parentRunId": run_id, "strategy": strategy}},
    )
    result = data["launchRunReexecution"]
    if result["__typename"] != "LaunchRunSuccess":
        raise ServiceError(f"re-executing {run_id} ({strategy}) failed: {result}")
    return result["run"]["runId"]


def terminate_run(services: DagsterServices, run_id: str) -> None:
    """The run page's "Terminate" button (graceful: the run worker is asked to stop)."""
    data = services.graphql(
        """mutation($id: String!) { terminateRun(runId: $id) { __typename
             ... on TerminateRunFailure { message } ... on PythonError { message } } }""",
        {"id": run_id},
    )
    result = data["terminateRun"]
    if result["__typename"] != "TerminateRunSuccess":
        raise ServiceError(f"terminating {run_id} failed: {result}")


def pool_usage(services: DagsterServices, pool: str) -> dict[str, Any]:
    """A concurrency pool's limit and which runs hold its slots (the Deployment → Concurrency page)."""
    data = services.graphql(
        """query($pool: String!) { instance { concurrencyLimit(concurrencyKey: $pool) {
        slotCount limit activeRunIds claimedSlots { runId stepKey } } } }""",
        {"pool": pool},
    )
    return data["instance"]["concurrencyLimit"]


def run_records(services: DagsterServices) -> dict[str, dict[str, Any]]:
    """Every run the webserver knows, by id: status, tags, start and end times."""
    data = services.graphql("""{ runsOrError { __typename ... on Runs { results {
        runId status jobName startTime endTime tags { key value } } } } }""")
    return {
        r["runId"]: {**r, "tags": {t["key"]: t["value"] for t in r["tags"]}} for r in data["runsOrError"]["results"]
    }


def materialization_metadata(services: DagsterServices, asset: str, batch: str) -> dict[str, Any]:
    """The metadata of the latest materialization of one asset partition, label -> value."""
    data = services.graphql(
        """query($key: AssetKeyInput!, $partition: String!) { assetOrError(assetKey: $key) { __typename
             ... on Asset { assetMaterializations(partitions: [$partition], limit: 1) { runId partition
               metadataEntries { label __typename
                 ... on FloatMetadataEntry { floatValue } ... on IntMetadataEntry { intValue }
                 ... on MarkdownMetadataEntry { mdStr } ... on JsonMetadataEntry { jsonString }
                 ... on PathMetadataEntry { path } ... on TextMetadataEntry { text } } } } } }""",
        {"key": {"path": [asset]}, "partition": batch},
    )
    materializations = data["assetOrError"].get("assetMaterializations", [])
    if not materializations:
        return {}
    values = {}
    for entry in materializations[0]["metadataEntries"]:
        value = next(
            (entry[k] for k in ("floatValue", "intValue", "mdStr", "jsonString", "path", "text") if k in entry), None
        )
        values[entry["label"]] = value
    values["__run_id__"] = materializations[0]["runId"]
    return values


# --------------------------------------------------------------------------------------------
# Storage integrity
# --------------------------------------------------------------------------------------------


def leftover_temp_files(root: Path) -> list[str]:
    """``*.tmp`` (and hidden ``.*.tmp``) files anywhere under ``root``: traces of a torn write."""
    return sorted(
        str(path.relative_to(root)) for path in root.rglob("*") if path.is_file() and path.name.endswith(".tmp")
    )


def unreadable_files(root: Path) -> list[str]:
    """Every Parquet and JSON/JSONL file under ``root`` that does not parse whole."""
    bad = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        try:
            if path.suffix == ".parquet":
                pd.read_parquet(path)
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
            elif path.suffix == ".jsonl":
                for line in path.read_text(encoding="utf-8").splitlines():
                    json.loads(line)
        except Exception as error:  # noqa: BLE001 - any parse error is the finding
            bad.append(f"{path.relative_to(root)}: {type(error).__name__}: {error}")
    return bad


def copy_batch(source: Path, storage_root: Path, batch: str) -> Path:
    """Place a batch's files in ``inbox/<batch>/`` with fresh modification times.

    Fresh times keep the inbox sensor from treating the folder as settled (it waits 60 s), so
    the test, not the sensor, decides when the batch runs."""
    target = storage_root / "inbox" / batch
    shutil.copytree(source, target, copy_function=shutil.copyfile)
    return target


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------


def sample_batch(tmp_path_factory) -> tuple[Path, Any]:
    """The project's sample batch (every media kind, broken files included), generated once per
    pytest session; returns its folder and its :class:`~qwen_dataset.samples.truth.SampleTruth`."""
    from qwen_dataset.samples.batch import generate_sample_batch
    from qwen_dataset.samples.truth import read_truth, write_truth

    base = tmp_path_factory.getbasetemp() / "ops_sample"
    folder, truth_path = base / "files", base / "truth.json"
    if not truth_path.exists():
        shutil.rmtree(base, ignore_errors=True)
        truth = generate_sample_batch(folder, seed=0)
        write_truth(truth, truth_path)
    return folder, read_truth(truth_path)


def write_tiny_batch(folder: Path, seed: int, images: int = 2) -> Path:
    """``images`` small PNGs whose content depends on ``seed`` (distinct content ids per batch)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(images):
        shade = (seed * 37 + index * 91) % 256
        picture = Image.new("RGB", (160 + 16 * index, 120), (shade, 255 - shade, (seed * 11) % 256))
        picture.putpixel((index, 0), (seed % 256, seed // 256 % 256, index))
        picture.save(folder / f"img_{index}.png")
    return folder


def age_files(folder: Path, seconds: float) -> None:
    """Backdate every file of ``folder``: to the inbox sensor, a batch that has settled."""
    then = time.time() - seconds
    for path in folder.rglob("*"):
        os.utime(path, (then, then))
