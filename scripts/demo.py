"""`make demo`: generate a sample batch, materialize the whole graph for it, print a summary, then
tell the review story on it (SIMULATED annotators and reviewer, through the workbench's own code):

1. the pipeline runs on the batch (ingest, frames, RapidOCR pre-annotation, exports);
2. the batch is imported into the workbench's database with a double-blind sample; two simulated
   annotators correct the pre-annotations, each version made from the generator's ground truth
   with seeded edits (box jitter; one annotator skips most lines of one page: a real disagreement);
3. a simulated reviewer sends one single-annotated item back and its annotator resubmits it (the
   reviewed item), and the disagreement waits for arbitration;
4. the QC report is measured and its gate fails for that real reason, saying which frame and
   annotators, and what to do;
5. the reviewer arbitrates; the report is measured again over what will be exported and passes;
6. a release is assembled with its dataset card.

Runs against the Dagster instance in $DAGSTER_HOME (SQLite by default), so the runs show up in
`make dev` afterwards, with their lineage and metadata; the simulated accounts (``sim-*``) and the
batch's items live in the annotation database `make workbench` reads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
from dagster import DagsterInstance

from qwen_dataset.db.engine import make_engine
from qwen_dataset.definitions import build_definitions, database_url_for
from qwen_dataset.payloads import TASK_ORDER, boxes_table
from qwen_dataset.quality.ocr_truth import score_frames_against_sample_truth, summarize
from qwen_dataset.records import load_payload
from qwen_dataset.samples.batch import generate_sample_batch, write_instruction_file
from qwen_dataset.samples.evaluate import evaluate_against_truth
from qwen_dataset.samples.truth import SampleTruth, write_truth
from qwen_dataset.store.inbox import mark_ready
from qwen_dataset.store.layout import StorageLayout
from qwen_dataset.store.paths import is_url_root


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0, help="sample generator seed")
    parser.add_argument("--batch", default=None, help="batch name (default sample-<seed>)")
    parser.add_argument("--root", default=os.environ.get("QWEN_STORAGE_ROOT", ".storage"), help="storage root")
    return parser.parse_args()


def prepare_batch(layout: StorageLayout, batch: str, seed: int) -> Path:
    inbox = layout.batch_inbox(batch)
    if inbox.exists():
        shutil.rmtree(inbox)  # the generator is deterministic: regenerating gives the same files
    truth = generate_sample_batch(inbox, seed=seed)
    write_instruction_file(truth, layout.inbox, batch)  # one GUI instruction per screen, beside the batch
    truth_path = layout.root / "sample_truth" / f"{batch}.json"
    write_truth(truth, truth_path)
    mark_ready(inbox)
    return truth_path


def print_summary(layout: StorageLayout, batch: str, truth_path: Path, seconds: float) -> None:
    from qwen_dataset.samples.truth import read_truth

    uploads = pd.read_parquet(layout.manifest("raw_uploads", batch))
    frames = pd.read_parquet(layout.manifest("frames", batch))
    final = pd.read_parquet(layout.manifest("human_corrections", batch))
    regions = boxes_table(final, frames, tasks=("ocr",))
    print(
        f"\nbatch {batch}: {len(uploads)} files in, {(uploads['status'] == 'ok').sum()} ok, "
        f"{(uploads['status'] == 'duplicate').sum()} duplicate, {(uploads['status'] == 'quarantined').sum()} quarantined"
    )
    for row in uploads[uploads["status"] != "ok"].itertuples(index=False):
        print(f"  {row.status:<11} {row.original_name!r}: {row.reason}")
    kinds = frames["kind"].value_counts().to_dict()
    print(f"frames: {len(frames)} ({kinds}), low-light: {int(frames['low_light'].sum())}")
    failed = int((final["status"] == "failed").sum())
    print(f"annotations: {len(final)} ({failed} failed), text regions: {len(regions)}")
    print_ocr_accuracy(read_truth(truth_path), uploads, frames, final)
    print_task_accuracy(
        read_truth(truth_path), uploads, frames, final, layout.root / "exports" / "reports" / f"{batch}.json"
    )
    print(f"quality report: {layout.root / 'exports' / 'reports' / f'{batch}.html'}")
    print(f"exports: {layout.exports(batch)}")
    for path in sorted(layout.exports(batch).glob("*.*")):
        print(f"  {path.name}")
    print(f"wall time: {seconds:.1f} s\n")


SHOWN_SCREEN = "screen_1_login.png"


def print_task_accuracy(
    truth: SampleTruth, uploads: pd.DataFrame, frames: pd.DataFrame, final: pd.DataFrame, report: Path
) -> None:
    """Per task: rows made and accuracy against the generator's truth (code fidelity: the QC report's)."""
    figures = json.loads(report.read_text())["figures"] if report.exists() else {}
    print("per task, against the generator's truth:")
    for row in evaluate_against_truth(truth, uploads, frames, final):
        if row.task == "image_to_code":
            row = dataclasses.replace(
                row, figures={"ssim": figures.get("code_ssim"), "text_recall": figures.get("code_text_recall")}
            )
        print(f"  {row.line()}")


def print_ocr_accuracy(truth: SampleTruth, uploads: pd.DataFrame, frames: pd.DataFrame, final: pd.DataFrame) -> None:
    """Accuracy against the generator's truth, spaces counted (the headline) and not, per language."""
    scored = score_frames_against_sample_truth(truth, uploads, frames, final)
    if not scored:
        return
    lines = [line for frame in scored.values() for line in frame.lines]
    total = summarize(
        lines, sum(frame.regions for frame in scored.values()), sum(frame.spurious_regions for frame in scored.values())
    )
    print(
        f"OCR character accuracy against the generator's ground truth: {total.accuracy:.1%} as exported "
        f"(spaces counted), {total.accuracy_without_spaces:.1%} without spaces; {total.characters} characters, "
        f"{total.lines} lines, line recall {total.line_recall:.1%}, {total.spurious_regions} spurious regions"
    )
    for language in ("zh", "en", "mixed", "other"):
        part = summarize(line for line in lines if line.language == language)
        if part.lines:
            print(
                f"  {language:<5}: {part.accuracy:.1%} (without spaces {part.accuracy_without_spaces:.1%}), "
                f"{part.lines} lines"
            )
    regions = _regions_of(SHOWN_SCREEN, uploads, frames, final)
    if regions is not None:
        print(f"exported OCR text of {SHOWN_SCREEN}: " + " | ".join(region["text"] for region in regions))


def _regions_of(
    file_name: str, uploads: pd.DataFrame, frames: pd.DataFrame, final: pd.DataFrame
) -> list[dict[str, Any]] | None:
    upload = uploads.loc[uploads["original_name"] == file_name, "upload_id"]
    frame = frames.loc[frames["upload_id"].isin(upload), "frame_id"]
    rows = final[final["frame_id"].isin(frame) & (final["task"] == "ocr") & (final["status"] == "ok")]
    return load_payload(rows.iloc[0]["payload"]).get("regions", []) if len(rows) else None


def run_demo(root: str, batch: str, seed: int, instance: DagsterInstance) -> tuple[int, Any]:
    """The whole demo on ``root``: the pipeline, then the review story; returns (exit code, story)."""
    from demo_story import print_next_steps, print_story, tell_review_story

    started = time.perf_counter()
    layout = StorageLayout(root)
    layout.ensure()
    truth_path = prepare_batch(layout, batch, seed)
    defs = build_definitions(storage_root=str(layout.root))
    instance.add_dynamic_partitions("batches", [batch])
    # The terminal gets warnings; every event stays in the run's log (see `make dev`).
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    every_task = {"ai_annotations": {"config": {"tasks": list(TASK_ORDER)}}}  # on the default engine too
    result = defs.resolve_job_def("process_batch").execute_in_process(
        instance=instance, partition_key=batch, raise_on_error=False, run_config={**quiet, "ops": every_task}
    )
    if not result.success:
        print(
            f"the run failed; open `make dev` and look at run {result.run_id} for the step that failed", file=sys.stderr
        )
        return 1, None
    print_summary(layout, batch, truth_path, time.perf_counter() - started)
    from qwen_dataset.samples.truth import read_truth

    engine = make_engine(database_url_for(str(layout.root)))
    story = tell_review_story(defs, instance, engine, layout, batch, read_truth(truth_path), quiet)
    engine.dispose()
    print_story(story)
    print(f"total wall time: {time.perf_counter() - started:.1f} s\n")
    print_next_steps(batch)
    return 0, story


def main() -> int:
    args = parse_args()
    batch = args.batch or f"sample-{args.seed}"
    if is_url_root(args.root):
        print(
            f"error: the demo writes its sample batch into a folder; {args.root} is object storage. Run it with "
            "--root <folder> (or unset QWEN_STORAGE_ROOT); object-store roots are for `make dev` and deployments.",
            file=sys.stderr,
        )
        return 2
    code, _ = run_demo(args.root, batch, args.seed, DagsterInstance.get())
    return code


if __name__ == "__main__":
    sys.exit(main())
