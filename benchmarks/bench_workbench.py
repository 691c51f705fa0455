"""CPU per save in process, and latency and errors of the workbench's save endpoint under load.

For each database (SQLite file; PostgreSQL: a fresh database on the local server, dropped after):

1. **CPU per save in process** (no HTTP, no client): the app is called as an ASGI application in
   this process, one ``PUT /api/annotations/<id>`` after another (sign-in check, Label Studio ->
   canonical conversion, optimistic concurrency, UPDATE, commit); process CPU time per save
   against the floor measured in the same rounds: the bare SQL ``UPDATE ... WHERE version = :v
   RETURNING`` of the same row through the same engine, committed. ``GET /api/me`` (the cheapest
   signed-in request) is printed beside them. Rounds alternate, so machine noise hits all three.
2. **Paced load**: the app under ``python -m qwen_dataset.workbench serve`` in a child process
   (``--workers`` server processes) and ``--clients`` annotators, each saving its item once every
   ``--period`` seconds for ``--seconds`` seconds (random phases, so they do not march in step);
   p50/p95/p99 latency and the answers other than 200, printed every few seconds as it goes.
3. **Burst**: ``--burst`` clients at once, each opening its item and saving it ``--burst-saves``
   times as fast as it can: the count of answers other than 200 (5xx, dropped connections) is
   what must stay 0.

Sessions are signed with the app's key instead of signing in through argon2, which is slow on
purpose and not what is measured. Each client owns its item, so a 409 would be a bug too.

``--server-repo DIR`` measures another checkout (e.g. ``git archive main``) in the same way:
its code in the in-process child and in the server; the clients are this script's.

    .venv/bin/python benchmarks/bench_workbench.py                     # SQLite and PostgreSQL, full size
    .venv/bin/python benchmarks/bench_workbench.py --skip-sqlite --workers 2
    .venv/bin/python benchmarks/bench_workbench.py --clients 3 --seconds 2 --burst 4 --in-process-saves 10  # tiny
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

REPO = Path(__file__).resolve().parents[1]
# The checkout whose code is measured in process (``--server-repo`` re-runs this script with it).
CODE = Path(os.environ.get("QWEN_BENCH_CODE") or REPO)
sys.path.insert(0, str(CODE))

from qwen_dataset.db.engine import make_engine, sqlite_url  # noqa: E402
from qwen_dataset.db.models import HumanAnnotation, User  # noqa: E402
from qwen_dataset.geometry import to_label_studio  # noqa: E402
from qwen_dataset.records import (  # noqa: E402
    AnnotationRecord,
    FrameRecord,
    annotation_id_for,
    dump_payload,
    frame_id_for,
    to_frame,
)
from qwen_dataset.store.layout import StorageLayout  # noqa: E402
from qwen_dataset.workbench.admin_settings import load_settings, update_settings  # noqa: E402
from qwen_dataset.workbench.assignment import import_batch  # noqa: E402
from qwen_dataset.workbench.security import CSRF_HEADER, SESSION_COOKIE, SessionSigner, hash_password  # noqa: E402

SECRET = "bench-secret-" + "k" * 40
BATCH = "bench"
WIDTH, HEIGHT = 640, 360
POSTGRES_ADMIN_URL = os.environ.get("QWEN_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
REPORT_EVERY_S = 5.0


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (WIDTH, HEIGHT), (seed % 256, 200, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def prepare(url: str, root: Path, clients: int) -> list[dict]:
    """Accounts, manifests and the imported batch; returns per client its user id and annotation id."""
    layout = StorageLayout(root)
    frames, ai = [], []
    for index in range(clients):
        sha, uri = layout.blobs.put_bytes(png(index))
        frame = FrameRecord(
            frame_id_for(sha, 0), sha, BATCH, "image", 0, None, None, WIDTH, HEIGHT, uri, False, 200.0, ""
        )
        frames.append(frame)
        payload = {
            "regions": [
                {
                    "bbox": [40.0, 40.0, 240.0, 90.0],
                    "text": f"line {index}",
                    "confidence": 0.9,
                    "language": "en",
                    "reading_order": 0,
                }
            ]
        }
        ai.append(
            AnnotationRecord(
                annotation_id_for(frame.frame_id, "ocr", "ai", "bench"),
                frame.frame_id,
                sha,
                BATCH,
                "ocr",
                "ai",
                "bench",
                "1",
                "2026-01-01T00:00:00+00:00",
                "ok",
                "",
                dump_payload(payload),
                False,
            )
        )
    for asset, rows, kind in (("frames", frames, FrameRecord), ("ai_annotations", ai, AnnotationRecord)):
        path = layout.manifest(asset, BATCH)
        path.parent.mkdir(parents=True, exist_ok=True)
        to_frame(rows, kind).to_parquet(path, index=False)
    engine = make_engine(url)
    password_hash = hash_password("bench password")
    with Session(engine) as session:
        session.add_all(
            [
                User(username=f"annotator{index:03d}", password_hash=password_hash, role="annotator", active=True)
                for index in range(clients)
            ]
        )
        session.commit()
        update_settings(session, {"double_rate": 0.0}, None)
        import_batch(session, layout, BATCH, load_settings(session), "bench")
        session.commit()
        rows = (
            session.query(HumanAnnotation.assignee_id, HumanAnnotation.annotation_id)
            .filter(HumanAnnotation.batch == BATCH)
            .all()
        )
    engine.dispose()
    signer = SessionSigner(SECRET, 3600)
    targets = []
    for user_id, annotation_id in sorted(rows):
        cookie, csrf = signer.dumps(user_id)
        targets.append({"cookie": cookie, "csrf": csrf, "annotation_id": annotation_id})
    assert len(targets) == clients, f"expected one item per annotator, got {len(targets)}"
    return targets


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prepare_in(repo: Path, url: str, root: Path, clients: int) -> list[dict]:
    """:func:`prepare` with another checkout's code (its schema, its import), in a child process."""
    if repo == REPO:
        return prepare(url, root, clients)
    snippet = (
        "import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "from benchmarks.bench_workbench import prepare;"
        "print(json.dumps(prepare(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", snippet, str(repo), url, str(root), str(clients)],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_server(url: str, root: Path, port: int, repo: Path = REPO, workers: int = 1) -> subprocess.Popen:
    env = {
        **os.environ,
        "QWEN_DATABASE_URL": url,
        "QWEN_STORAGE_ROOT": str(root),
        "QWEN_WORKBENCH_SECRET": SECRET,
        "QWEN_WORKBENCH_SECURE_COOKIES": "0",
        "PYTHONPATH": str(repo),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    command = [sys.executable, "-m", "qwen_dataset.workbench", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:  # older checkouts have no --workers: ask only when it matters
        command += ["--workers", str(workers)]
    log = open(root / "server.log", "wb")  # a file, not a pipe: a full pipe would stall the server
    server = subprocess.Popen(command, cwd=repo, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the workbench did not start: {(root / 'server.log').read_text()[-2000:]}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/login", timeout=1.0)
            return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the workbench did not answer within 60 s")


def moved_results(index: int) -> list[dict]:
    box = [40.0 + index % 7, 40.0, 240.0 + index % 7, 90.0]
    value = {**to_label_studio(box, WIDTH, HEIGHT), "rotation": 0}
    common = {"id": "r0", "to_name": "image", "original_width": WIDTH, "original_height": HEIGHT, "image_rotation": 0}
    return [
        {**common, "from_name": "bbox", "type": "rectanglelabels", "value": {**value, "rectanglelabels": ["text"]}},
        {**common, "from_name": "transcription", "type": "textarea", "value": {**value, "text": [f"edit {index}"]}},
    ]


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:  # requests stuck inside it (an old pool did that)
        server.kill()
        server.wait()


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    if not ordered:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000

    return {"p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99), "max_ms": ordered[-1] * 1000}


def shown(figures: dict[str, float]) -> str:
    return "   ".join(f"{key.removesuffix('_ms')} {figures[key]:7.1f} ms" for key in ("p50_ms", "p95_ms", "p99_ms"))


# --------------------------------------------------------------------------- 1. CPU per save in process


async def _asgi(app: Any, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
    """One request through the ASGI application, no server and no socket: what the app itself costs."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    delivered = False

    async def receive() -> dict:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError("not reached")

    status, chunks = 0, []

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


FLOOR_SQL = text(
    "UPDATE human_annotations SET payload = :payload, updated_at = :now, version = version + 1 "
    "WHERE annotation_id = :annotation_id AND version = :version RETURNING version"
)


def cpu_in_process(url: str, rounds: int, saves: int) -> dict:
    """CPU ms per save through the app vs the bare UPDATE through the same engine (medians of rounds)."""
    from datetime import UTC, datetime

    from qwen_dataset.workbench.app import create_app
    from qwen_dataset.workbench.config import WorkbenchSettings

    with tempfile.TemporaryDirectory(prefix="bench-workbench-cpu-") as scratch:
        root = Path(scratch) / "root"
        target = prepare(url, root, 1)[0]
        settings = WorkbenchSettings(database_url=url, storage_root=root, secret=SECRET, secure_cookies=False)
        app = create_app(settings)
        engine = app.state.engine
        headers = {
            "cookie": f"{SESSION_COOKIE}={target['cookie']}",
            CSRF_HEADER: target["csrf"],
            "content-type": "application/json",
        }
        path = f"/api/annotations/{target['annotation_id']}"
        bodies = [json.dumps({"result": moved_results(index)}) for index in range(saves)]

        async def measure() -> dict[str, list[float]]:
            status, opened = await _asgi(app, "GET", path, headers)
            assert status == 200, opened
            version = json.loads(opened)["version"]
            payload = dump_payload(json.loads(opened)["payload"])

            async def save_all(count: int) -> None:
                nonlocal version
                for index in range(count):
                    body = bodies[index % len(bodies)].replace("{", f'{{"version": {version}, ', 1).encode()
                    status, answer = await _asgi(app, "PUT", path, headers, body)
                    assert status == 200, answer
                    version = json.loads(answer)["version"]

            def floor_all(count: int) -> None:
                nonlocal version
                for _ in range(count):
                    with engine.begin() as connection:
                        version = connection.execute(
                            FLOOR_SQL,
                            {
                                "payload": payload,
                                "now": datetime.now(UTC),
                                "annotation_id": target["annotation_id"],
                                "version": version,
                            },
                        ).scalar_one()

            async def me_all(count: int) -> None:
                for _ in range(count):
                    status, answer = await _asgi(app, "GET", "/api/me", headers)
                    assert status == 200, answer

            await save_all(min(20, saves))  # warm-up: first imports, caches, the pool
            per_op: dict[str, list[float]] = {"floor": [], "save": [], "me": [], "save_wall": []}
            for number in range(rounds):
                for kind in ("floor", "save", "me"):
                    started, wall_started = time.process_time(), time.perf_counter()
                    if kind == "floor":
                        floor_all(saves)
                    elif kind == "save":
                        await save_all(saves)
                    else:
                        await me_all(saves)
                    per_op[kind].append((time.process_time() - started) / saves * 1000)
                    if kind == "save":
                        per_op["save_wall"].append((time.perf_counter() - wall_started) / saves * 1000)
                print(
                    f"  round {number + 1}/{rounds}: CPU per save {per_op['save'][-1]:.2f} ms "
                    f"(wall {per_op['save_wall'][-1]:.2f} ms), "
                    f"bare UPDATE {per_op['floor'][-1]:.2f} ms, GET /api/me {per_op['me'][-1]:.2f} ms",
                    flush=True,
                )
            return per_op

        try:
            per_op = asyncio.run(measure())
        finally:
            engine.dispose()
    result = {kind: statistics.median(values) for kind, values in per_op.items()}
    return {
        "cpu_ms_per_save": result["save"],
        "cpu_ms_floor_update": result["floor"],
        "cpu_ms_get_me": result["me"],
        "wall_ms_per_save": result["save_wall"],  # one save after another: CPU and round trips
        "save_vs_floor": result["save"] / result["floor"],
    }


def cpu_in_process_of(repo: Path, url: str, rounds: int, saves: int) -> dict:
    """:func:`cpu_in_process` with another checkout's code, in a child process running this script."""
    if repo == REPO:
        return cpu_in_process(url, rounds, saves)
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, __file__, "--cpu-only", url, str(rounds), str(saves), out.name]
        env = {**os.environ, "QWEN_BENCH_CODE": str(repo), "PYTHONPATH": str(repo), "PYTHONDONTWRITEBYTECODE": "1"}
        subprocess.run(command, cwd=repo, env=env, check=True)
        return json.loads(Path(out.name).read_text())


# --------------------------------------------------------------------------- 2. paced load, 3. burst


class Tally:
    """Latencies and answer codes, all of them and since the last report."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.codes: collections.Counter = collections.Counter()
        self.reported = 0

    def add(self, seconds: float, code: int | str) -> None:
        self.latencies.append(seconds)
        self.codes[code] += 1

    @property
    def not_ok(self) -> int:
        return sum(count for code, count in self.codes.items() if code != 200)

    def since_report(self) -> list[float]:
        window, self.reported = self.latencies[self.reported :], len(self.latencies)
        return window

    def summary(self, wall: float) -> dict:
        return {
            "requests": len(self.latencies),
            "seconds": wall,
            "rps": len(self.latencies) / wall if wall else 0.0,
            **percentiles(self.latencies),
            "not_ok": self.not_ok,
            "codes": {str(code): count for code, count in sorted(self.codes.items(), key=str)},
        }


class Annotator:
    """One simulated annotator: its own HTTP client, session and item, and the version it holds."""

    def __init__(self, base: str, target: dict) -> None:
        self.client = httpx.AsyncClient(
            base_url=base,
            cookies={SESSION_COOKIE: target["cookie"]},
            headers={CSRF_HEADER: target["csrf"]},
            timeout=120.0,
        )
        self.url = f"/api/annotations/{target['annotation_id']}"
        self.version: int | None = None
        self.saves = 0

    async def open(self, tally: Tally | None = None) -> None:
        started = time.perf_counter()
        try:
            opened = await self.client.get(self.url)
            code: int | str = opened.status_code
        except httpx.TransportError as error:
            code = type(error).__name__
        if tally is not None:
            tally.add(time.perf_counter() - started, code)
        self.version = opened.json()["version"] if code == 200 else None

    async def save(self, tally: Tally) -> None:
        if self.version is None:
            await self.open()
        started = time.perf_counter()
        try:
            response = await self.client.put(
                self.url, json={"version": self.version, "result": moved_results(self.saves)}
            )
            code: int | str = response.status_code
        except httpx.TransportError as error:
            code = type(error).__name__  # a dropped connection counts as an error too
        tally.add(time.perf_counter() - started, code)
        self.saves += 1
        self.version = response.json()["version"] if code == 200 else None

    async def close(self) -> None:
        await self.client.aclose()


async def paced_load(base: str, targets: list[dict], seconds: float, period: float) -> dict:
    """Every annotator saves once every ``period`` s for ``seconds`` s; reports as it goes."""
    annotators = [Annotator(base, target) for target in targets]
    await asyncio.gather(*(annotator.open() for annotator in annotators))
    tally = Tally()
    loop = asyncio.get_running_loop()
    started = loop.time()
    until = started + seconds
    phases = random.Random(7)

    async def annotate(annotator: Annotator) -> None:
        due = started + phases.uniform(0, period)
        while due < until:
            await asyncio.sleep(max(0.0, due - loop.time()))
            await annotator.save(tally)
            due += period

    async def report() -> None:
        while True:
            await asyncio.sleep(REPORT_EVERY_S)
            window = percentiles(tally.since_report())
            print(
                f"    {loop.time() - started:5.1f} s: {len(tally.latencies)} saves, last {REPORT_EVERY_S:.0f} s "
                f"{shown(window)}   not 200 so far: {tally.not_ok}",
                flush=True,
            )

    reporter = asyncio.create_task(report())
    try:
        await asyncio.gather(*(annotate(annotator) for annotator in annotators))
    finally:
        reporter.cancel()
        await asyncio.gather(*(annotator.close() for annotator in annotators))
    return tally.summary(loop.time() - started)


async def burst(base: str, targets: list[dict], saves: int) -> dict:
    """Every client at the same moment: open its item, then save it ``saves`` times in a row."""
    annotators = [Annotator(base, target) for target in targets]
    tally = Tally()
    started = time.perf_counter()

    async def one(annotator: Annotator) -> None:
        await annotator.open(tally)
        for _ in range(saves):
            await annotator.save(tally)

    try:
        await asyncio.gather(*(one(annotator) for annotator in annotators))
    finally:
        await asyncio.gather(*(annotator.close() for annotator in annotators))
    return tally.summary(time.perf_counter() - started)


def cpu_seconds_of_tree(pid: int) -> float | None:
    """User + system CPU seconds of a process and its descendants (Linux ``/proc``); None elsewhere."""
    tick = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    try:
        while pending:
            current = pending.pop()
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime and stime, fields 14 and 15
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
    except (OSError, ValueError):
        return None
    return total


def over_http(name: str, url: str, args: argparse.Namespace, repo: Path) -> dict:
    accounts = max(args.clients, args.burst)
    with tempfile.TemporaryDirectory(prefix="bench-workbench-") as scratch:
        root = Path(scratch) / "root"
        targets = prepare_in(repo, url, root, accounts)
        port = free_port()
        server = start_server(url, root, port, repo, args.workers)
        base = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(burst(base, targets[: args.clients], 2))  # warm-up: imports, pools, caches
            print(
                f"  paced load: {args.clients} annotators, one save every {args.period:g} s each, {args.seconds:g} s",
                flush=True,
            )
            cpu_before = cpu_seconds_of_tree(server.pid)
            paced = asyncio.run(paced_load(base, targets[: args.clients], args.seconds, args.period))
            cpu_after = cpu_seconds_of_tree(server.pid)
            if cpu_before is not None and cpu_after is not None and paced["requests"]:
                paced["server_cpu_ms_per_save"] = (cpu_after - cpu_before) / paced["requests"] * 1000
            server_cpu = f"{paced['server_cpu_ms_per_save']:.2f} ms" if "server_cpu_ms_per_save" in paced else "unknown"
            print(
                f"  paced load: {paced['requests']} saves, {paced['rps']:.1f}/s   {shown(paced)}   "
                f"max {paced['max_ms']:.1f} ms   not 200: {paced['not_ok']} {paced['codes'] if paced['not_ok'] else ''}"
                f"\n  server CPU per save over HTTP (all its processes): {server_cpu}",
                flush=True,
            )
            print(f"  burst: {args.burst} clients at once, open + {args.burst_saves} saves each", flush=True)
            burst_figures = asyncio.run(burst(base, targets[: args.burst], args.burst_saves))
            print(
                f"  burst: {burst_figures['requests']} requests, {burst_figures['rps']:.1f}/s   {shown(burst_figures)}   "
                f"not 200: {burst_figures['not_ok']} {burst_figures['codes'] if burst_figures['not_ok'] else ''}",
                flush=True,
            )
        finally:
            stop_server(server)
    return {"paced": paced, "burst": burst_figures}


# --------------------------------------------------------------------------- the command


@contextmanager
def fresh_database(kind: str) -> Iterator[str]:
    """The URL of a new, empty database: a SQLite file, or a database on the local PostgreSQL server
    (dropped afterwards)."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-workbench-db-") as scratch:
            yield sqlite_url(Path(scratch) / "annotations.db")
        return
    name = f"qwen_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def bench(kind: str, args: argparse.Namespace, repo: Path) -> dict:
    where = "" if repo == REPO else f" (code from {repo})"
    # Latencies on a shared machine say as much about its other work as about the server.
    print(
        f"\n{kind}{where}; load average of the machine {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True
    )
    result: dict[str, Any] = {"database": kind, "code": str(repo), "workers": args.workers}
    if args.in_process_saves:
        print(f"  CPU in process: {args.rounds} rounds of {args.in_process_saves} saves", flush=True)
        with fresh_database(kind) as url:
            cpu = cpu_in_process_of(repo, url, args.rounds, args.in_process_saves)
        print(
            f"  CPU per save in process {cpu['cpu_ms_per_save']:.2f} ms vs the bare UPDATE "
            f"{cpu['cpu_ms_floor_update']:.2f} ms: x{cpu['save_vs_floor']:.2f}   (GET /api/me {cpu['cpu_ms_get_me']:.2f} ms; "
            f"wall time per save, one at a time: {cpu['wall_ms_per_save']:.2f} ms)",
            flush=True,
        )
        result["cpu"] = cpu
    if args.seconds > 0 or args.burst > 0:
        with fresh_database(kind) as url:
            result.update(over_http(kind, url, args, repo))
    return result


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50, help="annotators of the paced load")
    parser.add_argument("--period", type=float, default=1.0, help="seconds between two saves of one annotator")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the paced load (0: skip it)")
    parser.add_argument("--burst", type=int, default=200, help="clients of the burst")
    parser.add_argument("--burst-saves", type=int, default=3, help="saves of each burst client")
    parser.add_argument("--in-process-saves", type=int, default=300, help="saves per round in process (0: skip)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the in-process measurement")
    parser.add_argument("--workers", type=int, default=1, help="server processes (serve --workers)")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--server-repo", type=Path, default=REPO, help="measure this checkout's code")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    repo = args.server_repo.resolve()
    results = []
    for kind in ("sqlite", "postgresql"):
        if not getattr(args, f"skip_{kind.removesuffix('ql')}"):
            results.append(bench(kind, args, repo))
    failed = sum(result[kind]["not_ok"] for result in results for kind in ("paced", "burst") if kind in result)
    print(f"\nanswers other than 200: {failed}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if failed else 0


def cpu_only_child(url: str, rounds: str, saves: str, out: str) -> int:
    Path(out).write_text(json.dumps(cpu_in_process(url, int(rounds), int(saves))))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--cpu-only"]:
        sys.exit(cpu_only_child(*sys.argv[2:6]))
    sys.exit(main())
