"""What an object-store root costs: one batch through the whole graph on a folder, ``memory://`` and S3.

Starts moto's S3 server on a free loopback port (nothing leaves the machine), generates the
seeded sample batch, and in this one process runs ``process_batch`` (raw_uploads → exports and
augmented_dataset) then ``release_dataset`` on three roots in turn:

* ``local``: a folder (the baseline: blobs and exports are hard links, nothing is copied);
* ``memory``: fsspec's in-memory store (the cost of the staging and cache layer itself);
* ``s3``: the local S3 server (the same plus HTTP round trips and a fresh blob cache).

Prints wall seconds per root and the ratio to the local folder, and, for S3, the cold and warm
blob-cache throughput (download + sha256 check vs. reading the cached copy) on ``--blob-mb`` MiB.
The roots run ``--rounds`` times (default 2) in alternation and each keeps its best time: the
first run of the process pays first-use imports (torch, Great Expectations) that the others do not.

    .venv/bin/python benchmarks/bench_object_storage.py [--rounds 2] [--blob-mb 64] [--files N]
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import tempfile
import time
import uuid
from pathlib import Path

from dagster import DagsterInstance

from qwen_dataset.db.engine import sqlite_url
from qwen_dataset.definitions import build_definitions
from qwen_dataset.samples.batch import generate_sample_batch, trim_sample_batch
from qwen_dataset.store.inbox import mark_ready
from qwen_dataset.store.layout import StorageLayout, upload_folder

BATCH = "bench-0"


def start_s3() -> tuple[object, dict[str, str]]:
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, {"endpoint_url": f"http://127.0.0.1:{port}", "key": "bench", "secret": "bench"}


def new_bucket(options: dict[str, str]) -> str:
    import s3fs

    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem(**options).mkdir(bucket)
    return bucket


def fresh_root(kind: str, work: Path, s3_options: dict[str, str]) -> str:
    if kind == "local":
        return str(work / "root")
    if kind == "memory":
        return f"memory://bench-{uuid.uuid4().hex[:8]}"
    return f"s3://{new_bucket(s3_options)}/root"


def put_batch(layout: StorageLayout, sample: Path) -> None:
    if layout.remote:
        upload_folder(sample, layout.batch_inbox(BATCH))
    else:
        import shutil

        shutil.copytree(sample, layout.batch_inbox(BATCH))
    mark_ready(layout.batch_inbox(BATCH))


def run_batch(root: str, options: dict[str, str], sample: Path, work: Path) -> float:
    """Seconds from the batch in the inbox to a published release."""
    os.environ["QWEN_STORAGE_CACHE"] = str(work / "cache")  # cold cache: a fresh worker
    layout = StorageLayout(root, storage_options=options)
    layout.ensure()
    put_batch(layout, sample)
    defs = build_definitions(
        storage_root=root, database_url=sqlite_url(work / "annotations.db"), storage_options=options
    )
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("batches", [BATCH])
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    started = time.perf_counter()
    assert (
        defs.resolve_job_def("process_batch")
        .execute_in_process(instance=instance, partition_key=BATCH, run_config=quiet)
        .success
    )
    assert defs.resolve_job_def("release_dataset").execute_in_process(instance=instance, run_config=quiet).success
    return time.perf_counter() - started


def cache_throughput(options: dict[str, str], megabytes: int, work: Path) -> tuple[float, float]:
    """MiB/s of a cold local_path (download + hash) and a warm one (read of the cached file)."""
    layout = StorageLayout(f"s3://{new_bucket(options)}/root", storage_options=options, cache=work / "blob-cache")
    layout.ensure()
    _, uri = layout.blobs.put_bytes(os.urandom(megabytes << 20))
    cold_cache = StorageLayout(layout.root, cache=work / "cold-cache")
    started = time.perf_counter()
    cold_cache.blobs.local_path(uri)
    cold = time.perf_counter() - started
    started = time.perf_counter()
    cold_cache.blobs.read_bytes(uri)
    warm = time.perf_counter() - started
    return megabytes / cold, megabytes / warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--blob-mb", type=int, default=64)
    parser.add_argument("--files", type=int, default=0, help="keep only the first N files of the batch (0: all)")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server, s3_options = start_s3()
    best: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-objstore-") as tmp:
            base = Path(tmp)
            sample = base / "sample" / BATCH
            generate_sample_batch(sample, seed=0)
            if args.files:
                trim_sample_batch(sample, args.files)
            files = sum(1 for p in sample.rglob("*") if p.is_file())
            size = sum(p.stat().st_size for p in sample.rglob("*") if p.is_file()) / 2**20
            print(f"sample batch: {files} files, {size:.1f} MiB; {args.rounds} round(s)")
            for round_index in range(args.rounds):
                for name in ("local", "memory", "s3"):
                    work = base / f"{name}-{round_index}"
                    work.mkdir()
                    root = fresh_root(name, work, s3_options)
                    seconds = run_batch(root, s3_options if name == "s3" else {}, sample, work)
                    best[name] = min(best.get(name, seconds), seconds)
                    print(f"  round {round_index + 1} {name:<7} {seconds:7.2f} s")
            print("\nroot     best s   ratio to local folder")
            for name in ("local", "memory", "s3"):
                print(f"{name:<8} {best[name]:7.2f}   {best[name] / best['local']:.2f}")
            cold, warm = cache_throughput(s3_options, args.blob_mb, base)
            print(
                f"\nS3 blob cache on {args.blob_mb} MiB: cold {cold:.0f} MiB/s (download + sha256), "
                f"warm {warm:.0f} MiB/s (cached file)"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
