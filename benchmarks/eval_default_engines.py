"""The default engine on the sample batch: per task, its quality against the generator's truth and its speed.

The sample batch (seed 0) is ingested and its frames extracted by the pipeline's own code (the
low-light dashboard read through its CLAHE copy, PDF pages at the frames stage's DPI, the video
sampled at 1 fps), with the batch's instruction file; then, in this one process, the default
backend (``RapidOcrResource``'s: RapidOCR + the classical engines) annotates each task in
pipeline order, and :func:`qwen_dataset.samples.evaluate.evaluate_against_truth` scores the
result. image_to_code is scored with the project's code-fidelity metric (headless Chromium +
RapidOCR, :mod:`qwen_dataset.quality.code_fidelity`).

Printed per task: the figures, seconds per frame of that task's pass, and that time as a ratio to
the OCR-only pass per frame (the baseline, measured in the same run). The OCR lines are read once
per frame and run and reused by gui_action, image_to_code and video_event (as in a pipeline run),
so their time is the engine's own; "all five" is the whole run per still frame against OCR alone.

    .venv/bin/python benchmarks/eval_default_engines.py [--threads 2] [--files N]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qwen_dataset.ingest.frames import extract_frames
from qwen_dataset.ingest.uploads import ingest_batch
from qwen_dataset.payloads import TASK_ORDER
from qwen_dataset.prelabel.base import outcomes_to_records
from qwen_dataset.prelabel.classical.backend import ClassicalBackend
from qwen_dataset.prelabel.instructions import instructions_by_upload
from qwen_dataset.prelabel.policy import frame_inputs, pending, task_inputs
from qwen_dataset.prelabel.rapidocr_backend import RapidOcrBackend
from qwen_dataset.quality.code_fidelity import CodeFidelityScorer, score_image_to_code_items
from qwen_dataset.records import AnnotationRecord, FrameRecord, UploadRecord, to_frame
from qwen_dataset.samples.batch import generate_sample_batch, trim_sample_batch, write_instruction_file
from qwen_dataset.samples.evaluate import evaluate_against_truth
from qwen_dataset.samples.truth import SampleTruth
from qwen_dataset.store.blobs import BlobStore
from qwen_dataset.store.layout import StorageLayout

BATCH = "eval"


def keep_files(truth: SampleTruth, inbox: Path, count: int) -> SampleTruth:
    """A smaller run (the suite's): the first ``count`` GUI screens and scenes, and their truth only."""
    kept = trim_sample_batch(inbox, count)
    return dataclasses.replace(
        truth,
        images=[item for item in truth.images if item.file_name in kept],
        pdfs=[item for item in truth.pdfs if item.file_name in kept],
        videos=[item for item in truth.videos if item.file_name in kept],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads of the OCR engine")
    parser.add_argument("--files", type=int, default=0, help="keep only the first N files of the batch (0: all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        layout = StorageLayout(Path(folder) / "root")
        layout.ensure()
        inbox = Path(layout.batch_inbox(BATCH))
        truth = generate_sample_batch(inbox, seed=0)
        if args.files:
            truth = keep_files(truth, inbox, args.files)
        write_instruction_file(truth, Path(layout.inbox), BATCH)
        uploads = ingest_batch(inbox, BATCH, layout.blobs)
        ok = [upload for upload in uploads if upload.status == "ok"]
        frames = to_frame([record for upload in ok for record in extract_frames(upload, layout.blobs)], FrameRecord)
        upload_table = to_frame(uploads, UploadRecord)
        base = ClassicalBackend(RapidOcrBackend(intra_op_threads=args.threads))
        backend = base.with_run_options(
            instructions=instructions_by_upload(layout.inbox, BATCH),
            video_path_for=lambda upload_id: layout.blobs.local_path(BlobStore.uri_for(upload_id)),
        )
        inputs = frame_inputs(frames, layout.blobs)
        kinds = dict(zip(frames["frame_id"], frames["kind"]))
        base.ocr.engine()  # build the ONNX sessions before the clock starts
        parts, seconds, counts = [], {}, {}
        for task in TASK_ORDER:
            todo, expected = pending(task, task_inputs(backend, task, inputs, kinds), set())
            started = time.perf_counter()
            records = outcomes_to_records(backend.annotate(todo, task), expected, task, backend.author, backend.version)
            seconds[task], counts[task] = time.perf_counter() - started, len(todo)
            parts.append(to_frame(records, AnnotationRecord))
        final = pd.concat(parts, ignore_index=True)
        pictures = {frame.frame_id: frame.image_path for frame in inputs}
        with CodeFidelityScorer() as scorer:
            code = score_image_to_code_items(final, frames, pictures.__getitem__, scorer)
        rows = evaluate_against_truth(truth, upload_table, frames, final, code)
    failed = final[final["status"] == "failed"]
    print(f"default engine {backend.author}; {len(frames)} frames; {len(failed)} failed rows")
    for row in failed.itertuples(index=False):
        print(f"  failed {row.task} {row.frame_id}: {row.error}")
    ocr_per_frame = seconds["ocr"] / max(1, counts["ocr"])
    for row in rows:
        per_frame = seconds[row.task] / max(1, counts[row.task])
        print(
            f"{row.line()}  | {per_frame:.3f} s/frame over {counts[row.task]} frames, {per_frame / ocr_per_frame:.2f}x OCR"
        )
    stills = counts["gui_action"]
    total = seconds["ocr"] * stills / max(1, counts["ocr"]) + sum(
        seconds[t] for t in ("gui_action", "spatial", "image_to_code")
    )
    print(
        f"all five tasks per still frame: {total / max(1, stills):.3f} s vs OCR alone {ocr_per_frame:.3f} s "
        f"({total / max(1, stills) / ocr_per_frame:.2f}x); video_event {seconds['video_event']:.2f} s per video"
    )


if __name__ == "__main__":
    main()
