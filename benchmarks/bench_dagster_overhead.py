"""What Dagster costs per batch run, and whether a run's cost grows with the number of batches.

Part 0, import. A run worker (and every code server) starts by importing the code location.
Each figure is the median wall time of a fresh interpreter doing one import (and, beside it, of
the import statement alone, without the interpreter's start-up and exit): the fixture code
location (``tests.fixtures_code_location``, what the deployments below serve), the project's
``qwen_dataset.definitions``, and as floors ``import dagster`` and an empty interpreter.

Part 0b, a cold run worker without the services. A fresh interpreter does what a launched run's
worker does after its spawn: import the fixture code location, open a SQLite instance
(``deploy/dagster.yaml`` without PostgreSQL) and run an empty batch's ``process_batch`` on it, its
events written to SQLite. Wall and CPU seconds of each phase; CPU time tells the code's cost apart
from the load of a shared machine. ``--compare-repo DIR`` (e.g. a worktree of main) runs the same
rounds with that checkout's code too, alternating, and prints the ratio of the medians.

Part 1, launch overhead. An EMPTY batch (an inbox folder with no file) runs the whole
``process_batch`` graph with nothing to do, so its time is orchestration. Baseline: the same
empty batch through ``execute_in_process`` in this (warm) process, the steps' own cost. Then
each instance configuration gets a real deployment (one ``dagster-webserver`` + one
``dagster-daemon``, ``deploy/dagster.yaml``, the fixture code location with the scripted
prelabel backend) and empty batches are launched through dagster_graphql's client, timed from
``submit_job_execution`` to the poller seeing SUCCESS (polled every 50 ms). The run's own events
split that time into queue wait (enqueued -> starting: the daemon's dequeue loop), worker start
(starting -> run start: process spawn and code-location import) and steps (run start -> success).
Each deployment's first launch (cold page cache, tables and pools created) is run untimed first;
``--no-warmup`` skips it for a quick check, and its figures then include that cold start.
Configurations: SQLite and PostgreSQL instance storage with the in-process executor (what
``qwen_dataset.definitions`` and the fixture location use), each with Dagster's default launcher
(a fresh interpreter per run) and with the warm run workers (``deploy/run_workers.yaml``: a Celery
worker on Redis that loaded the libraries once forks a child per run; skipped when Redis does not
answer), and SQLite with Dagster's multiprocess executor (one process per step, each importing the
code location again).

Part 2, growth. On one persistent SQLite instance, tiny batches (``--images`` small PNGs, distinct
content) are processed one after another with ``execute_in_process`` until ``max(--existing)``
batches exist. When 1, 10 and 100 batches exist, one more batch is added: its ``process_batch``
run must take as long as the first (only the new partition is processed), and so should the
``release_dataset`` run (``benchmarks/bench_release.py`` measures releases at 1,000 batches).

Every figure is printed as soon as it is measured; the tables at the end repeat them with the
ratios against the baselines measured in this same command.

    .venv/bin/python benchmarks/bench_dagster_overhead.py [--runs 3] [--multiprocess-runs 1]
        [--run-worker-runs 3] [--imports 3] [--cold-runs 3] [--compare-repo DIR] [--existing 1,10,100] [--images 2] [--postgres-admin-url URL | --no-postgres]
        [--skip-launch] [--keep DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.ops_helpers and the fixture code location live in tests/
DEFAULT_ADMIN_URL = os.environ.get("QWEN_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # no DEBUG line per event
PHASES = {
    "RunEnqueuedEvent": "enqueued",
    "RunStartingEvent": "starting",
    "RunStartEvent": "started",
    "RunSuccessEvent": "succeeded",
}


@dataclasses.dataclass
class LaunchTiming:
    total: float  # submit -> SUCCESS seen by the poller
    queue: float  # enqueued -> starting
    worker_start: float  # starting -> run start
    steps: float  # run start -> success


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


IMPORTS = {
    "fixture code location (tests.fixtures_code_location)": "import tests.fixtures_code_location",
    # defs() is what Dagster calls when it loads the location (the module alone builds nothing).
    "qwen_dataset.definitions": "from qwen_dataset.definitions import defs; defs()",
    "floor: import dagster": "import dagster",
    "floor: empty interpreter": "pass",
}


def import_seconds(statement: str, env: dict[str, str]) -> tuple[float, float]:
    """Wall time of a fresh interpreter that runs one import statement, and of the statement alone
    (what a run worker pays before its first step; the rest is start-up and the exit's teardown)."""
    timed = f"import time\n_started = time.perf_counter()\n{statement}\nprint(time.perf_counter() - _started)"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", timed], cwd=REPO, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - started, float(done.stdout.splitlines()[-1])


def import_times(workdir: Path, rounds: int) -> dict[str, list[float]]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "QWEN_STORAGE_ROOT": str(workdir / "import-root")}
    print(f"\nPart 0 - import time in a fresh interpreter, {rounds} rounds, seconds", flush=True)
    print(f"  load average: {os.getloadavg()[0]:.1f}", flush=True)
    times: dict[str, list[float]] = {label: [] for label in IMPORTS}
    imports: dict[str, list[float]] = {label: [] for label in IMPORTS}
    import_seconds(IMPORTS["floor: import dagster"], env)  # warm the page cache for every label alike
    for _ in range(rounds):
        for label, statement in IMPORTS.items():
            process, statement_alone = import_seconds(statement, env)
            times[label].append(process)
            imports[label].append(statement_alone)
    for label, values in times.items():
        print(
            f"  {label:55} median {median(values):6.2f}   ({', '.join(f'{v:.2f}' for v in values)}); "
            f"the import alone {median(imports[label]):.2f}",
            flush=True,
        )
    return times


COLD_WORKER = """
import json, os, sys, time
from pathlib import Path
wall, cpu = [time.perf_counter()], [time.process_time()]
def mark():
    wall.append(time.perf_counter()); cpu.append(time.process_time())
import tests.fixtures_code_location as location
mark()
from dagster import DagsterInstance
job = location.defs.resolve_job_def("process_batch")
batch = sys.argv[2]
(Path(os.environ["QWEN_STORAGE_ROOT"]) / "inbox" / batch).mkdir(parents=True)
with DagsterInstance.from_config(sys.argv[1]) as instance:
    instance.add_dynamic_partitions("batches", [batch])
    mark()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    assert job.execute_in_process(run_config=quiet, instance=instance, partition_key=batch).success
    mark()
phases = ("import", "instance", "steps")
print(json.dumps({p: [wall[i + 1] - wall[i], cpu[i + 1] - cpu[i]] for i, p in enumerate(phases)}))
"""
COLD_PHASES = ("import", "instance", "steps")


def cold_worker(repo: Path, home: Path, root: Path, batch: str) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds per phase of one cold run worker on ``repo``'s code."""
    env = {**os.environ, "PYTHONPATH": str(repo), "QWEN_STORAGE_ROOT": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", COLD_WORKER, str(home), batch], cwd=repo, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"the cold run worker failed on {repo}:\n{done.stderr[-3000:]}")
    return {phase: (wall, cpu) for phase, (wall, cpu) in json.loads(done.stdout.splitlines()[-1]).items()}


def cold_workers(workdir: Path, rounds: int, compare: Path | None) -> None:
    from tests.ops_helpers import create_sqlite_storage, write_dagster_home

    repos = {"this checkout": REPO, **({f"{compare}": compare} if compare else {})}
    print(f"\nPart 0b - a cold run worker (import, SQLite instance, empty batch), {rounds} rounds", flush=True)
    print(f"  load average before: {os.getloadavg()[0]:.1f}", flush=True)
    results: dict[str, list[dict[str, tuple[float, float]]]] = {label: [] for label in repos}
    for k in range(rounds):
        for n, (label, repo) in enumerate(repos.items()):
            home = write_dagster_home(workdir / "cold" / f"home-{k}-{n}", postgres=False)
            create_sqlite_storage(home)
            phases = cold_worker(repo, home, workdir / "cold" / f"root-{k}-{n}", f"empty-cold-{k}")
            results[label].append(phases)
            shown = "  ".join(f"{p} {w:.2f}/{c:.2f}" for p, (w, c) in phases.items())
            print(f"  round {k} {label}: wall/CPU s  {shown}", flush=True)
    print(f"  load average after: {os.getloadavg()[0]:.1f}")
    for label, runs in results.items():
        cells = [
            f"{p} {median([r[p][0] for r in runs]):.2f}/{median([r[p][1] for r in runs]):.2f}" for p in COLD_PHASES
        ]
        total = [sum(r[p][1] for p in COLD_PHASES) for r in runs]
        print(f"  median {label}: wall/CPU s  {'  '.join(cells)}  CPU in all {median(total):.2f}")
    if compare:
        ours, theirs = ([sum(r[p][1] for p in COLD_PHASES) for r in results[key]] for key in repos)
        print(f"  CPU in all, this checkout / {compare}: {median(ours) / median(theirs):.2f}")


def in_process_seconds(job, instance, batch: str) -> float:
    started = time.perf_counter()
    result = job.execute_in_process(run_config=QUIET, instance=instance, partition_key=batch, raise_on_error=False)
    elapsed = time.perf_counter() - started
    if not result.success:
        raise RuntimeError(f"{job.name} failed for batch {batch!r}; run it in a test to see why")
    return elapsed


def baseline_empty_batch(root: Path, runs: int) -> list[float]:
    """The steps alone: an empty batch through execute_in_process, code already imported."""
    from dagster import DagsterInstance

    from qwen_dataset.definitions import build_definitions
    from tests.fixtures_code_location import ScriptedPrelabel

    job = build_definitions(storage_root=str(root), prelabel=ScriptedPrelabel()).resolve_job_def("process_batch")
    instance = DagsterInstance.ephemeral()
    times = []
    for k in range(runs + 1):
        batch = f"empty-baseline-{k}"
        (root / "inbox" / batch).mkdir(parents=True)
        instance.add_dynamic_partitions("batches", [batch])
        times.append(in_process_seconds(job, instance, batch))
        print(f"  baseline execute_in_process run {k}: {times[-1]:.2f} s{' (warm-up)' if k == 0 else ''}", flush=True)
    return times[1:]  # the first run pays one-off imports (Great Expectations, matplotlib)


def launch_and_time(services, batch: str) -> LaunchTiming:
    from tests.ops_helpers import add_partition, run_errors, run_events, submit_batch

    (services.storage_root / "inbox" / batch).mkdir(parents=True)
    add_partition(services, batch)
    client = services.client()
    started = time.perf_counter()
    run_id = submit_batch(services, batch)
    deadline = started + 600
    while (status := client.get_run_status(run_id).value) not in {"SUCCESS", "FAILURE", "CANCELED"}:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"run {run_id} still {status} after 600 s")
        time.sleep(0.05)
    total = time.perf_counter() - started
    if status != "SUCCESS":
        raise RuntimeError(f"run {run_id} ended {status}:\n{run_errors(services, run_id)}")
    at = {
        PHASES[e["__typename"]]: int(e["timestamp"]) / 1000
        for e in run_events(services, run_id)
        if e["__typename"] in PHASES
    }
    timing = LaunchTiming(
        total, at["starting"] - at["enqueued"], at["started"] - at["starting"], at["succeeded"] - at["started"]
    )
    print(
        f"  {batch}: total {timing.total:.2f} s = queue {timing.queue:.2f} + worker {timing.worker_start:.2f} "
        f"+ steps {timing.steps:.2f} (+ submit and polling)",
        flush=True,
    )
    return timing


def launched_runs(
    workdir: Path,
    label: str,
    runs: int,
    warmup: bool,
    pg_url: str | None = None,
    executor: str = "in_process",
    run_workers: bool = False,
) -> list[LaunchTiming]:
    from tests.ops_helpers import deployment

    folder = workdir / label
    folder.mkdir(parents=True)
    print(f"  starting a deployment for {label} ...", flush=True)
    with deployment(
        folder,
        folder / "storage",
        pg_url=pg_url,
        extra_env={"QWEN_FIXTURE_EXECUTOR": executor},
        run_workers=run_workers,
    ) as services:
        if warmup:  # first run after start: cold page cache, tables and pools created
            launch_and_time(services, f"empty-{label}-warmup")
        return [launch_and_time(services, f"empty-{label}-{k}") for k in range(runs)]


def print_launch_table(baseline: list[float], rows: dict[str, list[LaunchTiming]]) -> None:
    base = median(baseline)
    print("\nPart 1 - launch to success of an EMPTY batch (process_batch), medians in seconds")
    print(
        f"  baseline execute_in_process, warm, steps only: {base:.2f} s "
        f"(runs: {', '.join(f'{t:.2f}' for t in baseline)})"
    )
    header = (
        f"  {'instance / executor':40} {'runs':>4} {'total':>7} {'queue':>7} {'worker':>7} {'steps':>7} "
        f"{'overhead':>9} {'x base':>7}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for label, timings in rows.items():
        total = median([t.total for t in timings])
        print(
            f"  {label:40} {len(timings):>4} {total:>7.2f} {median([t.queue for t in timings]):>7.2f} "
            f"{median([t.worker_start for t in timings]):>7.2f} {median([t.steps for t in timings]):>7.2f} "
            f"{total - base:>9.2f} {total / base:>7.1f}"
        )
    print(
        "  queue = enqueued -> starting (daemon dequeue loop, deploy/dagster.yaml: dequeue_interval_seconds); "
        "worker = starting -> "
        "run start (spawn + import of the code location; with warm run workers: the Celery task reaching a "
        "forked child that imports the location); overhead = total - baseline"
    )


def growth(workdir: Path, existing: list[int], images: int) -> tuple[list[tuple[int, float, float]], list[float]]:
    """(existing batches, process_batch of the new batch, release) at each size; every batch's time."""
    from dagster import DagsterInstance

    from qwen_dataset.definitions import build_definitions
    from tests.fixtures_code_location import ScriptedPrelabel
    from tests.ops_helpers import write_dagster_home, write_tiny_batch

    root = workdir / "growth" / "storage"
    home = write_dagster_home(workdir / "growth" / "dagster_home", postgres=False)
    defs = build_definitions(storage_root=str(root), prelabel=ScriptedPrelabel())
    process, release = defs.resolve_job_def("process_batch"), defs.resolve_job_def("release_dataset")
    rows, per_batch = [], []
    with DagsterInstance.from_config(str(home)) as instance:
        for count in range(max(existing) + 1):
            batch = f"batch-{count:04d}"
            write_tiny_batch(root / "inbox" / batch, seed=count, images=images)
            instance.add_dynamic_partitions("batches", [batch])
            per_batch.append(in_process_seconds(process, instance, batch))
            if count in existing:  # `count` batches existed before this one
                started = time.perf_counter()
                if not release.execute_in_process(run_config=QUIET, instance=instance, raise_on_error=False).success:
                    raise RuntimeError(f"release_dataset failed with {count + 1} batches")
                rows.append((count, per_batch[-1], time.perf_counter() - started))
                print(
                    f"  ... {count} existing: new batch {per_batch[-1]:.2f} s, release {rows[-1][2]:.2f} s", flush=True
                )
    return rows, per_batch


def print_growth_table(rows: list[tuple[int, float, float]], per_batch: list[float], images: int) -> None:
    first_process, first_release = rows[0][1], rows[0][2]
    print(f"\nPart 2 - one more batch ({images} images) on a persistent SQLite instance, execute_in_process, seconds")
    print(f"  {'existing':>8} {'process_batch':>14} {'x first':>8} {'release':>8} {'x first':>8}")
    for count, process_time, release_time in rows:
        print(
            f"  {count:>8} {process_time:>14.2f} {process_time / first_process:>8.2f} {release_time:>8.2f} "
            f"{release_time / first_release:>8.2f}"
        )
    for low, high in ((1, 11), (len(per_batch) - 10, len(per_batch))):
        if 0 <= low < high <= len(per_batch) and low < high:
            print(f"  mean process_batch of batches {low + 1}-{high}: {statistics.mean(per_batch[low:high]):.2f} s")


def postgres_reachable(admin_url: str) -> str | None:
    """None if the server answers, else why not."""
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return None
    except Exception as error:  # noqa: BLE001 - any failure means: skip PostgreSQL
        return f"{type(error).__name__}: {str(error).splitlines()[0]}"
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="timed launches per in-process configuration")
    parser.add_argument(
        "--multiprocess-runs", type=int, default=1, help="timed launches with the multiprocess executor (0: none)"
    )
    parser.add_argument(
        "--run-worker-runs",
        type=int,
        default=3,
        help="timed launches per instance with the warm run workers (deploy/run_workers.yaml; 0: none)",
    )
    parser.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="no untimed first launch per deployment (figures then include a cold start; for quick checks)",
    )
    parser.add_argument("--imports", type=int, default=3, help="fresh-interpreter rounds of part 0")
    parser.add_argument("--cold-runs", type=int, default=3, help="rounds of part 0b, a cold run worker (0: none)")
    parser.add_argument(
        "--compare-repo", type=Path, help="part 0b also on this checkout's code (e.g. a worktree of main), alternating"
    )
    parser.add_argument("--existing", default="1,10,100", help="batch counts at which one more batch is timed")
    parser.add_argument("--images", type=int, default=2, help="images per batch in part 2")
    parser.add_argument("--postgres-admin-url", default=DEFAULT_ADMIN_URL)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--skip-launch", action="store_true", help="no deployment: parts 0 and 2 only")
    parser.add_argument("--keep", type=Path, help="keep the work files here instead of a temp dir")
    args = parser.parse_args(argv)
    existing = sorted({int(n) for n in args.existing.split(",")})

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="bench_dagster_"))
    workdir.mkdir(parents=True, exist_ok=True)
    # The fixture code location reads its storage root at import; this process only uses its classes.
    os.environ.setdefault("QWEN_STORAGE_ROOT", str(workdir / "unused"))
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    try:
        print(f"work dir {workdir}; {os.cpu_count()} CPUs", flush=True)
        import_times(workdir, args.imports)
        if args.cold_runs:
            cold_workers(workdir, args.cold_runs, args.compare_repo)
        if not args.skip_launch:
            launch_part(workdir, args)
        print("\nPart 2 running ...", flush=True)
        growth_rows, per_batch = growth(workdir, existing, args.images)
        print_growth_table(growth_rows, per_batch, args.images)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


def redis_reachable() -> str | None:
    """None when the warm run workers' Redis answers, else why not."""
    import redis

    from tests.ops_helpers import REDIS_URL

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        return f"Redis at {REDIS_URL} is not reachable ({exc}); set QWEN_TEST_REDIS_URL"
    return None


def launch_part(workdir: Path, args: argparse.Namespace) -> None:
    print("\nPart 1 - launch to success of an EMPTY batch", flush=True)
    baseline = baseline_empty_batch(workdir / "baseline", args.runs)
    rows = {"sqlite / in_process": launched_runs(workdir, "sqlite-inproc", args.runs, warmup=args.warmup)}
    no_workers = redis_reachable() if args.run_worker_runs else "--run-worker-runs 0"
    if no_workers is None:
        rows["sqlite / in_process, warm run workers"] = launched_runs(
            workdir, "sqlite-workers", args.run_worker_runs, warmup=args.warmup, run_workers=True
        )
    why_not = "--no-postgres" if args.no_postgres else postgres_reachable(args.postgres_admin_url)
    if why_not is None:
        from tests.ops_helpers import temporary_database

        with temporary_database(args.postgres_admin_url) as url:
            rows["postgres / in_process"] = launched_runs(
                workdir, "pg-inproc", args.runs, warmup=args.warmup, pg_url=url
            )
        if no_workers is None:
            with temporary_database(args.postgres_admin_url) as url:
                rows["postgres / in_process, warm run workers"] = launched_runs(
                    workdir, "pg-workers", args.run_worker_runs, warmup=args.warmup, pg_url=url, run_workers=True
                )
    if args.multiprocess_runs:
        rows["sqlite / multiprocess"] = launched_runs(
            workdir, "sqlite-multi", args.multiprocess_runs, warmup=False, executor="multiprocess"
        )
    print_launch_table(baseline, rows)
    if not args.warmup:
        print("  --no-warmup: each deployment's first, cold launch is counted in its figures")
    if why_not is not None:
        print(f"  PostgreSQL skipped: {why_not}")
    if no_workers is not None:
        print(f"  warm run workers skipped: {no_workers}")


if __name__ == "__main__":
    main()
