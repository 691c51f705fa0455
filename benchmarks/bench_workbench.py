"""Throughput, latency and errors of the workbench's save endpoint under many concurrent annotators.

For each database (SQLite file; PostgreSQL: a fresh database on the local server, dropped after):

1. sets up a storage root with a pre-annotated batch of ``--clients`` frames, ``--clients``
   annotator accounts and the batch imported (every annotator gets one OCR item);
2. starts the app under uvicorn (one worker, its default settings: ``QWEN_WORKBENCH_THREADS``
   requests served at once) in a child process on 127.0.0.1 (a free port);
3. after a short warm-up of both kinds of request, baseline: every client sends ``--saves`` authenticated ``GET /api/me`` (session check, one
   primary-key read) concurrently;
4. load: every client saves its draft ``--saves`` times in a row (``PUT /api/annotations/<id>``
   with the version it holds and a moved box: Label Studio -> canonical conversion, optimistic
   concurrency, one UPDATE, commit), all clients at once (httpx, asyncio).

Prints requests/s, p50/p95/max latency and the count of answers other than 200 (5xx, connection
errors) of both, and save/baseline ratios (throughput ratio below 1.0: saves are that much slower
than the cheapest authenticated request). Sessions are signed with the app's key instead of
logging in through argon2, which is slow on purpose and not what is measured. Each client owns
its item, so a 409 would be a bug too.

``--server-repo DIR`` runs the preparation and the server from another checkout (e.g. the
previous release exported with ``git archive``), for a before/after comparison on the same
machine; the clients are this script's.

    .venv/bin/python benchmarks/bench_workbench.py [--clients 50] [--saves 40] [--skip-postgres] [--server-repo DIR]
    .venv/bin/python benchmarks/bench_workbench.py --clients 200 --saves 10 --skip-sqlite   # the burst check
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from PIL import Image
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

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


def start_server(url: str, root: Path, port: int, repo: Path = REPO) -> subprocess.Popen:
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


async def run_client(
    base: str, target: dict, requests: int, save: bool, latencies: list[float], codes: collections.Counter
) -> None:
    headers = {CSRF_HEADER: target["csrf"]}
    async with httpx.AsyncClient(
        base_url=base, cookies={SESSION_COOKIE: target["cookie"]}, headers=headers, timeout=120.0
    ) as client:
        url = f"/api/annotations/{target['annotation_id']}"

        async def current_version() -> int | None:
            try:
                opened = await client.get(url)
            except httpx.TransportError:
                return None
            return opened.json()["version"] if opened.status_code == 200 else None

        version = await current_version() if save else None
        for index in range(requests):
            started = time.perf_counter()
            try:
                if save:
                    response = await client.put(url, json={"version": version, "result": moved_results(index)})
                else:
                    response = await client.get("/api/me")
                code: int | str = response.status_code
            except httpx.TransportError as error:
                code = type(error).__name__  # a dropped connection counts as an error too
            latencies.append(time.perf_counter() - started)
            codes[code] += 1
            if save:
                version = response.json()["version"] if code == 200 else await current_version()


async def load(base: str, targets: list[dict], requests: int, save: bool) -> dict:
    latencies: list[float] = []
    codes: collections.Counter = collections.Counter()
    started = time.perf_counter()
    await asyncio.gather(*(run_client(base, target, requests, save, latencies, codes) for target in targets))
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "seconds": wall,
        "rps": len(ordered) / wall,
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[int(0.95 * (len(ordered) - 1))] * 1000,
        "max_ms": ordered[-1] * 1000,
        "not_ok": sum(count for code, count in codes.items() if code != 200),
        "codes": {str(code): count for code, count in sorted(codes.items(), key=str)},
    }


def bench(name: str, url: str, clients: int, saves: int, repo: Path = REPO) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-workbench-") as scratch:
        root = Path(scratch) / "root"
        targets = prepare_in(repo, url, root, clients)
        port = free_port()
        server = start_server(url, root, port, repo)
        try:
            base = f"http://127.0.0.1:{port}"
            # Warm-up (connection pools, first imports, SQLite page cache); not measured.
            for save in (False, True):
                warm = asyncio.run(load(base, targets, 2, save=save))
                print(
                    f"  warm-up {'saves' if save else 'GET /api/me'}: not 200: {warm['not_ok']} {warm['codes']}",
                    flush=True,
                )
            baseline = asyncio.run(load(base, targets, saves, save=False))
            saved = asyncio.run(load(base, targets, saves, save=True))
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:  # requests stuck inside it (the old pool did that)
                server.kill()
                server.wait()
    result = {
        "database": name,
        "server": str(repo),
        "clients": clients,
        "per_client": saves,
        "baseline_get_me": baseline,
        "save": saved,
        "save_vs_baseline_rps": saved["rps"] / baseline["rps"],
        "save_vs_baseline_p95": saved["p95_ms"] / baseline["p95_ms"],
    }
    where = "" if repo == REPO else f" (server from {repo})"
    print(f"\n{name}: {clients} annotators x {saves} requests each, one uvicorn worker{where}")
    for label, figures in (("GET /api/me (baseline)", baseline), ("PUT save", saved)):
        print(
            f"  {label:24s} {figures['rps']:8.1f} req/s   p50 {figures['p50_ms']:7.1f} ms   "
            f"p95 {figures['p95_ms']:7.1f} ms   max {figures['max_ms']:7.1f} ms   ({figures['requests']} in {figures['seconds']:.1f} s)"
            f"   not 200: {figures['not_ok']} {figures['codes'] if figures['not_ok'] else ''}"
        )
    print(
        f"  save/baseline: throughput x{result['save_vs_baseline_rps']:.2f}, p95 x{result['save_vs_baseline_p95']:.2f}"
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--saves", type=int, default=40)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--server-repo", type=Path, default=REPO, help="run the server from this checkout")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    repo = args.server_repo.resolve()
    results = []
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory(prefix="bench-workbench-db-") as scratch:
            url = sqlite_url(Path(scratch) / "annotations.db")
            results.append(bench("sqlite", url, args.clients, args.saves, repo))
    if not args.skip_postgres:
        name = f"qwen_bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
            results.append(bench("postgresql", url, args.clients, args.saves, repo))
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    if len(results) == 2:
        print(f"\npostgresql/sqlite save throughput: x{results[1]['save']['rps'] / results[0]['save']['rps']:.2f}")
    failed = sum(result[kind]["not_ok"] for result in results for kind in ("baseline_get_me", "save"))
    print(f"\nanswers other than 200: {failed}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
