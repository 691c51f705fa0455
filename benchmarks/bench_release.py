"""What one more batch costs a release, when 1, 100 and 1,000 batches exist already.

Each batch is left on disk as the pipeline leaves it, by the project's own functions: its frames
(``--images`` small distinct PNGs in the blob store), final annotations (one OCR region per
frame), quality report row, export folder (``write_batch_exports``, every format) and its
augmented copies (``--augment`` pipelines); the instance, a persistent
SQLite one, gets the materializations of the six assets in pipeline order. That takes a few
milliseconds a batch instead of the 1-2 s of running ``process_batch`` for each, so 1,000
batches are set up in minutes.

When ``N`` batches exist (each of ``--sizes``), one more batch is added and the
``release_dataset`` job runs through ``execute_in_process``: its wall time is the cost of adding
that batch. The ratio is against the first size, measured in this same command; flat means
1,000 : 1 close to 1 (the goal is <= 1.5). Each figure is printed as soon as it is measured.

    .venv/bin/python benchmarks/bench_release.py [--sizes 1,100,1000] [--images 2] [--augment geometric]
        [--rounds 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.ops_helpers writes the instance config
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
UPSTREAM = ("raw_uploads", "frames", "ai_annotations", "human_corrections", "qc_report", "exports")


def picture_bytes(batch_number: int, index: int) -> bytes:
    """A small PNG whose pixels depend on the batch and the index (a distinct upload each)."""
    import numpy as np

    from qwen_dataset.ingest.frames import encode_picture

    picture = np.full((24, 32 + index, 3), (batch_number * 37 + index * 91) % 256, np.uint8)
    picture[0, :3] = [batch_number % 256, batch_number // 256 % 256, index % 256]
    return encode_picture(picture, "png")


def batch_tables(layout, batch: str, number: int, images: int):
    """The batch's frames and final annotations, its pictures stored as blobs."""
    import pandas as pd

    from qwen_dataset.records import (
        AnnotationRecord,
        FrameRecord,
        annotation_id_for,
        dump_payload,
        frame_id_for,
        to_frame,
    )

    frames, annotations = [], []
    for index in range(images):
        data = picture_bytes(number, index)
        upload = hashlib.sha256(data).hexdigest()
        _, uri = layout.blobs.put_bytes(data)
        frame_id = frame_id_for(upload, 0)
        frames.append(
            FrameRecord(frame_id, upload, batch, "image", 0, None, None, 32 + index, 24, uri, False, 90.0, "")
        )
        region = {"bbox": [1.0, 1.0, 20.0, 12.0], "text": f"b{number} i{index}", "confidence": 0.9}
        annotations.append(
            AnnotationRecord(
                annotation_id=annotation_id_for(frame_id, "ocr", "ai", "bench"),
                frame_id=frame_id,
                upload_id=upload,
                batch=batch,
                task="ocr",
                source="ai",
                author="bench",
                template_version="v1",
                created_at="2026-01-01T00:00:00+00:00",
                status="ok",
                error="",
                payload=dump_payload({"regions": [{**region, "language": "en", "reading_order": 0}]}),
                reviewed=False,
            )
        )
    frame_table = to_frame(frames, FrameRecord)
    final = to_frame(annotations, AnnotationRecord)
    headline = pd.DataFrame([{"batch": batch, "mean_iou": None, "ocr_accuracy": 0.99}])
    return frame_table, final, headline


def add_batch(layout, instance, batch: str, number: int, images: int, augment: list[str]) -> None:
    """One batch on disk and in the instance, as process_batch leaves it."""
    from dagster import AssetMaterialization

    from assets.export import write_export_folder
    from qwen_dataset.store.paths import write_parquet

    frames, final, headline = batch_tables(layout, batch, number, images)
    instance.add_dynamic_partitions("batches", [batch])
    write_parquet(layout.manifest("frames", batch), frames)
    write_parquet(layout.manifest("human_corrections", batch), final)
    write_parquet(layout.manifest("qc_report", batch), headline)
    for asset in UPSTREAM[:-1]:
        instance.report_runless_asset_event(AssetMaterialization(asset, partition=batch))
    write_export_folder(layout, batch, final, frames, label_studio_prefix=None)
    instance.report_runless_asset_event(AssetMaterialization("exports", partition=batch))
    if augment:
        from qwen_dataset.augment.pipelines import augment_batch, default_registry

        result = augment_batch(frames, final, layout.blobs, augment, seed=0, copies=1, registry=default_registry())
        folder = layout.manifest("augmented_dataset", batch).with_suffix("")
        for name in ("frames", "annotations", "lineage", "rejected"):
            write_parquet(folder / f"{name}.parquet", getattr(result, name))
        instance.report_runless_asset_event(AssetMaterialization("augmented_dataset", partition=batch))


def release_seconds(release_job, instance) -> float:
    started = time.perf_counter()
    result = release_job.execute_in_process(run_config=QUIET, instance=instance, raise_on_error=False)
    elapsed = time.perf_counter() - started
    if not result.success:
        raise RuntimeError("release_dataset failed; run tests/test_release.py to see why")
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,100,1000", help="batch counts at which one more batch is added")
    parser.add_argument("--images", type=int, default=2, help="images per batch")
    parser.add_argument("--augment", default="geometric", help="augmentation pipelines, comma separated ('' none)")
    parser.add_argument("--rounds", type=int, default=1, help="releases timed at each size (one more batch each)")
    parser.add_argument("--keep", type=Path, help="keep the work files here instead of a temp dir")
    args = parser.parse_args(argv)
    sizes = sorted({int(n) for n in args.sizes.split(",")})
    augment = [name for name in args.augment.split(",") if name]

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="bench_release_"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    # The fixture code location reads its storage root at import; this process only uses its classes.
    os.environ.setdefault("QWEN_STORAGE_ROOT", str(workdir / "unused"))
    try:
        run(workdir, sizes, args.images, augment, args.rounds)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


def run(workdir: Path, sizes: list[int], images: int, augment: list[str], rounds: int) -> None:
    from dagster import DagsterInstance

    from qwen_dataset.definitions import build_definitions
    from qwen_dataset.store.layout import StorageLayout
    from tests.fixtures_code_location import ScriptedPrelabel
    from tests.ops_helpers import write_dagster_home

    root = workdir / "storage"
    layout = StorageLayout(root)
    layout.ensure()
    home = write_dagster_home(workdir / "dagster_home", postgres=False)
    release_job = build_definitions(storage_root=str(root), prelabel=ScriptedPrelabel()).resolve_job_def(
        "release_dataset"
    )
    print(f"work dir {workdir}; {os.cpu_count()} CPUs; {images} images a batch; augment {augment or 'none'}")
    print(f"{'batches before':>14} {'+1 batch: release s':>20} {'x first':>8}   (setup of the batches, s)", flush=True)
    rows: list[tuple[int, float]] = []
    with DagsterInstance.from_config(str(home)) as instance:
        # A first release, not timed, pays the one-off imports (the writers, Great Expectations).
        add_batch(layout, instance, "batch-00000", 0, images, augment)
        count = 1
        print(f"{'warm-up':>14} {release_seconds(release_job, instance):>20.2f}", flush=True)
        for size in sizes:
            started = time.perf_counter()
            while count < size:
                add_batch(layout, instance, f"batch-{count:05d}", count, images, augment)
                count += 1
            setup = time.perf_counter() - started
            # The release of N batches exists (and keeps the batches' parts), as in production.
            release_seconds(release_job, instance)
            times = []
            for _ in range(rounds):
                add_batch(layout, instance, f"batch-{count:05d}", count, images, augment)
                count += 1
                times.append(release_seconds(release_job, instance))
            rows.append((size, statistics.median(times)))
            first = rows[0][1]
            print(
                f"{size:>14} {rows[-1][1]:>20.2f} {rows[-1][1] / first:>8.2f}   ({setup:.1f})",
                flush=True,
            )
    if len(rows) > 1:
        print(
            f"adding a batch at {rows[-1][0]} batches costs {rows[-1][1] / rows[0][1]:.2f}x what it costs at "
            f"{rows[0][0]} (goal <= 1.5)"
        )


if __name__ == "__main__":
    main()
