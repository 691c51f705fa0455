"""The review story of `make demo` (SIMULATED people, real code): see scripts/demo.py.

Everything a person would do in the workbench goes through the workbench's own domain functions
(import, submit, reject, resolve, waivers) on the annotation database; the figures, the gate and
the release come from materializing the Dagster jobs. Only the people are simulated: their
versions are made from the generator's ground truth with seeded edits.
"""

from __future__ import annotations

import dataclasses
import json
import random
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from dagster import DagsterInstance, Definitions
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from qwen_dataset.db.models import (
    BatchImport,
    GateWaiver,
    HumanAnnotation,
    ItemStatus,
    ReviewState,
    Role,
    User,
    WorkItem,
)
from qwen_dataset.records import Task, dump_payload
from qwen_dataset.samples.truth import SampleTruth, TextLine
from qwen_dataset.store.layout import StorageLayout
from qwen_dataset.workbench.admin_settings import load_settings
from qwen_dataset.workbench.assignment import import_batch
from qwen_dataset.workbench.editor import to_results
from qwen_dataset.workbench.workflow import reject, resolve, submit

ANNOTATORS = ("sim-alice", "sim-bob")
REVIEWER = "sim-rita"
#: The share of frames both simulated annotators annotate blind.
DOUBLE_RATE = 0.6
#: Of the sloppy annotator's version of the disagreement page, the share of lines kept.
KEPT_SHARE = 0.25
SEED = 7


@dataclasses.dataclass
class Story:
    """The facts the demo prints (and its test checks)."""

    batch: str
    items: int = 0
    double_blind: int = 0
    disagreement: str = ""  # the file (page) the annotators disagree on
    disagreement_reason: str = ""
    reviewed: str = ""  # the item a reviewer sent back and its annotator resubmitted
    arbitrated: list[str] = dataclasses.field(default_factory=list)
    gate_before: dict[str, Any] = dataclasses.field(default_factory=dict)
    gate_after: dict[str, Any] = dataclasses.field(default_factory=dict)
    report_before: dict[str, Any] = dataclasses.field(default_factory=dict)
    report_after: dict[str, Any] = dataclasses.field(default_factory=dict)
    report_html: str = ""
    release_version: str = ""
    release_path: str = ""
    card: str = ""


# ------------------------------------------------------------------------------------------------
# Simulated people


def ensure_people(session: Session) -> dict[str, User]:
    """The simulated accounts (random passwords nobody knows: they only act through this script)."""
    from qwen_dataset.workbench.api import create_user

    people = {}
    for name, role in [*((n, Role.ANNOTATOR.value) for n in ANNOTATORS), (REVIEWER, Role.REVIEWER.value)]:
        user = session.scalars(select(User).where(User.username == name)).first()
        people[name] = user or create_user(session, name, secrets.token_urlsafe(24), role)
    session.flush()
    return people


def reset_batch(session: Session, batch: str) -> None:
    """Forget the demo batch's earlier review (the demo regenerates the same batch every time)."""
    session.execute(delete(HumanAnnotation).where(HumanAnnotation.batch == batch))
    session.execute(delete(WorkItem).where(WorkItem.batch == batch))
    session.execute(delete(BatchImport).where(BatchImport.batch == batch))
    session.execute(delete(GateWaiver).where(GateWaiver.batch == batch))
    session.commit()


def _region(line: TextLine, scale: float, order: int, rng: random.Random, jitter: float) -> dict[str, Any]:
    box = [value * scale + rng.uniform(-jitter, jitter) for value in line.bbox]
    return {"bbox": box, "text": line.text, "language": line.language, "confidence": None, "reading_order": order}


def truth_lines(
    truth: SampleTruth, uploads: pd.DataFrame, frames: pd.DataFrame
) -> dict[str, tuple[list[TextLine], float]]:
    """Per frame: the generator's text lines and the scale from their units to the frame's pixels."""
    names = dict(zip(uploads["upload_id"], uploads["original_name"]))
    images = {image.file_name: image for image in truth.images}
    pdfs = {pdf.file_name: pdf for pdf in truth.pdfs}
    lines: dict[str, tuple[list[TextLine], float]] = {}
    for frame in frames.itertuples(index=False):
        name = names.get(frame.upload_id, "")
        if name in images and frame.kind == "image":
            lines[frame.frame_id] = (images[name].lines, frame.width / images[name].width)
        elif name in pdfs and frame.kind == "page" and pd.notna(frame.page):
            page = pdfs[name].pages[int(frame.page) - 1]
            lines[frame.frame_id] = (page.lines, frame.width / page.width_pt)
    return lines


def ocr_version(lines: list[TextLine], scale: float, rng: random.Random, *, sloppy: bool) -> str:
    """An annotator's OCR version: the truth with sub-pixel jitter; a sloppy one keeps few lines."""
    kept = lines[: max(1, int(len(lines) * KEPT_SHARE))] if sloppy else lines
    jitter = 0.4 if sloppy else 0.2
    return dump_payload({"regions": [_region(line, scale, i, rng, jitter) for i, line in enumerate(kept)]})


def video_version(truth: SampleTruth, annotator: int) -> str:
    """Events between the generator's scene cuts; the second annotator words them differently."""
    video = truth.videos[0]
    bounds = [0.0, *video.scene_cuts, video.duration]
    words = ("a new scene starts", "the picture changes to another scene")
    events = [
        {"start": round(start, 2), "end": round(end, 2), "description": f"{words[annotator]} {index + 1}"}
        for index, (start, end) in enumerate(zip(bounds, bounds[1:]))
        if end > start
    ]
    return dump_payload({"events": events})


def annotate(
    session: Session, people: Mapping[str, User], batch: str, versions: Mapping[tuple[str, str, str], str]
) -> None:
    """Every simulated annotator submits each of their drafts: the given version or, lacking one, the AI's."""
    by_id = {user.id: user for user in people.values()}
    drafts = session.scalars(
        select(HumanAnnotation)
        .where(HumanAnnotation.batch == batch, HumanAnnotation.state == ReviewState.DRAFT)
        .order_by(HumanAnnotation.frame_id, HumanAnnotation.slot)
    ).all()
    for row in drafts:
        user = by_id.get(row.assignee_id or -1)
        item = session.get(WorkItem, row.item_id)
        if user is None or item is None:
            continue  # a real annotator's assignment: left for them
        payload = versions.get((row.frame_id, item.task, user.username)) or item.ai_payload
        submit(session, user, row.annotation_id, row.version, to_results(item, payload))


# ------------------------------------------------------------------------------------------------
# The pipeline


def materialize(defs: Definitions, instance: DagsterInstance, job: str, batch: str | None, quiet: dict) -> Any:
    run_config = dict(quiet)
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance, partition_key=batch, raise_on_error=False, run_config=run_config
    )


def gate_outcome(result: Any) -> dict[str, Any]:
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.check_name == "qc_gate":
            return {
                "passed": evaluation.passed,
                "severity": evaluation.severity.value,
                "description": evaluation.description or "",
                "exports_ran": any(
                    event.asset_key is not None and event.asset_key.to_user_string() == "exports"
                    for event in result.get_asset_materialization_events()
                ),
            }
    return {}


def read_report(layout: StorageLayout, batch: str) -> dict[str, Any]:
    return json.loads((layout.reports / f"{batch}.json").read_text())


# ------------------------------------------------------------------------------------------------
# The story


def tell_review_story(
    defs: Definitions,
    instance: DagsterInstance,
    engine: Engine,
    layout: StorageLayout,
    batch: str,
    truth: SampleTruth,
    quiet: dict,
) -> Story:
    """Import, annotate, review, measure (gate fails), arbitrate, measure (gate passes), release."""
    story = Story(batch)
    uploads = pd.read_parquet(layout.manifest("raw_uploads", batch))
    frames = pd.read_parquet(layout.manifest("frames", batch))
    names = dict(zip(uploads["upload_id"], uploads["original_name"]))
    lines = truth_lines(truth, uploads, frames)
    rng = random.Random(SEED)
    with Session(engine, expire_on_commit=False) as session:
        reset_batch(session, batch)
        people = ensure_people(session)
        settings = dataclasses.replace(load_settings(session), double_rate=DOUBLE_RATE, seed=f"demo-{SEED}")
        summary = import_batch(session, layout, batch, settings, "demo")
        session.commit()
        story.items, story.double_blind = summary.items_created, summary.double_blind_items
        doubles = session.scalars(
            select(WorkItem).where(WorkItem.batch == batch, WorkItem.double_blind.is_(True), WorkItem.task == "ocr")
        ).all()
        # The disagreement: the double-blind page or screen with the most lines, half-done by one annotator.
        candidates = [item for item in doubles if item.frame_id in lines]
        sloppy_frame = max(candidates, key=lambda item: (len(lines[item.frame_id][0]), item.frame_id)).frame_id
        frame_row = frames.set_index("frame_id").loc[sloppy_frame]
        story.disagreement = names.get(frame_row["upload_id"], sloppy_frame)
        versions: dict[tuple[str, str, str], str] = {}  # (frame, task, annotator)
        for frame_id, (frame_lines, scale) in lines.items():
            for name in ANNOTATORS:
                sloppy = frame_id == sloppy_frame and name == ANNOTATORS[1]
                versions[(frame_id, Task.OCR.value, name)] = ocr_version(frame_lines, scale, rng, sloppy=sloppy)
        video_items = session.scalars(
            select(WorkItem).where(WorkItem.batch == batch, WorkItem.task == Task.VIDEO_EVENT.value)
        ).all()
        for item in video_items:
            for position, name in enumerate(ANNOTATORS):
                versions[(item.frame_id, Task.VIDEO_EVENT.value, name)] = video_version(truth, position)
        annotate(session, people, batch, versions)
        story.reviewed = review_one_item(session, people, batch, names, frames, versions)
        waiting = session.scalars(
            select(WorkItem).where(WorkItem.batch == batch, WorkItem.status == ItemStatus.ARBITRATION)
        ).all()
        # The first reason of each item waiting for arbitration (the workbench lists them all).
        story.disagreement_reason = "; ".join(f"{item.task}: {item.disagreement.split('; ')[0]}" for item in waiting)
        session.commit()

    before = materialize(defs, instance, "reexport_batch", batch, quiet)
    story.gate_before = gate_outcome(before)
    story.report_before = read_report(layout, batch)

    with Session(engine, expire_on_commit=False) as session:
        reviewer = session.scalars(select(User).where(User.username == REVIEWER)).one()
        for item in session.scalars(
            select(WorkItem).where(WorkItem.batch == batch, WorkItem.status == ItemStatus.ARBITRATION)
        ).all():
            resolve(session, reviewer, item.item_id, choice="a")  # the careful annotator's version
            story.arbitrated.append(f"{names.get(item.upload_id, item.frame_id)} ({item.task})")
    after = materialize(defs, instance, "reexport_batch", batch, quiet)
    story.gate_after = gate_outcome(after)
    story.report_after = read_report(layout, batch)
    story.report_html = str(layout.reports / f"{batch}.html")

    released = materialize(defs, instance, "release_dataset", None, quiet)
    if released.success:
        table = released.output_for_node("release")
        story.release_version = str(table["version"].iloc[0])
        story.release_path = str(table["path"].iloc[0])
        story.card = str(Path(story.release_path) / "README.md")
    return story


def review_one_item(
    session: Session,
    people: Mapping[str, User],
    batch: str,
    names: Mapping[str, str],
    frames: pd.DataFrame,
    versions: Mapping[tuple[str, str, str], str],
) -> str:
    """A reviewer spot-checks a single-annotated item, sends it back with a reason, the annotator resubmits."""
    single = session.scalars(
        select(WorkItem)
        .where(WorkItem.batch == batch, WorkItem.double_blind.is_(False), WorkItem.task == "ocr")
        .order_by(WorkItem.frame_id)
    ).first()
    if single is None:
        return ""
    row = reject(session, people[REVIEWER], single.item_id, "line 1: check the text against the picture")
    annotator = next(user for user in people.values() if user.id == row.assignee_id)
    payload = versions.get((single.frame_id, single.task, annotator.username)) or single.ai_payload
    submit(session, annotator, row.annotation_id, row.version, to_results(single, payload))
    upload = frames.set_index("frame_id").loc[single.frame_id, "upload_id"]
    return f"{names.get(upload, single.frame_id)}: sent back by {REVIEWER}, resubmitted by {annotator.username}"


# ------------------------------------------------------------------------------------------------
# What it prints


def print_story(story: Story) -> None:
    print("\n=== The review loop (SIMULATED annotators and reviewer; real workbench code, real gate) ===")
    print(
        f"workbench: {story.items} items imported, {story.double_blind} double-blind "
        f"(annotators {', '.join(ANNOTATORS)}, reviewer {REVIEWER})"
    )
    print(f"disagreement (seeded): {story.disagreement}: {story.disagreement_reason or 'none found'}")
    if story.reviewed:
        print(f"reviewed item: {story.reviewed}")
    print_report("QC report before arbitration", story.report_before)
    print(f"qc_gate before arbitration: {_verdict(story.gate_before)}")
    for line in story.gate_before.get("description", "").splitlines()[:8]:
        print(f"    {line}")
    print(f"arbitrated by {REVIEWER}: {', '.join(story.arbitrated) or 'nothing'}")
    print_report("QC report after arbitration", story.report_after)
    print(f"qc_gate after arbitration: {_verdict(story.gate_after)}")
    print(f"quality report page: {story.report_html} (every figure as JSON beside it)")
    if story.release_version:
        print(f"release {story.release_version}: {story.release_path}\ndataset card: {story.card}")
    else:
        print("release: none (see `make dev`, run of release_dataset)")


def _verdict(gate: Mapping[str, Any]) -> str:
    if not gate:
        return "not evaluated"
    if gate["passed"]:
        return "passed"
    state = "FAILED (exports blocked)" if gate["severity"] == "ERROR" else "warning (exports went ahead)"
    return f"{state}"


def print_report(title: str, report: Mapping[str, Any]) -> None:
    if not report:
        return
    print(f"{title}:")
    for name, status in report["statuses"].items():
        measured = report["measurements"].get(name)
        if measured is None:
            print(f"  {name:<21} no data")
            continue
        interval = "" if measured["ci_low"] is None else f", 95 % CI {measured['ci_low']:.3f}-{measured['ci_high']:.3f}"
        raw = "" if measured["raw"] in (None, measured["value"]) else f", raw {measured['raw']:.3f}"
        print(
            f"  {name:<21} {measured['value']:.3f}{interval}, n={measured['sample']} {measured['unit']}{raw}: "
            f"{status} (target > {report['targets'][name]})"
        )
    figures = report["figures"]
    shown = [
        key
        for key in ("matched_mean_iou", "event_tiou", "ai_ocr_accuracy", "ocr_accuracy_without_spaces")
        if figures.get(key) is not None
    ]
    if shown:
        print("  also: " + ", ".join(f"{key} {figures[key]:.3f}" for key in shown))
    counts = report["counts"]
    print(
        f"  annotators {counts['annotators']}, reviewers {counts['reviewers']}, reviewed {counts['reviewed']} of "
        f"{counts['annotations']} annotations, resolved by arbitration {counts.get('resolved_by_arbitration', 0)}"
    )


def print_next_steps(batch: str) -> None:
    print(
        "Next:\n"
        "  the Dagster UI:   make dev            -> http://127.0.0.1:3000 (DAGSTER_PORT=... for another port)\n"
        "  the workbench:    make workbench      -> http://127.0.0.1:8080 (WORKBENCH_PORT=... for another port)\n"
        "  your accounts:    .venv/bin/python -m qwen_dataset.workbench create-user NAME --role admin   "
        "(then annotators and reviewers, in the admin page or with --role)\n"
        f"  a batch into the workbench: the admin page's batch list, or "
        f".venv/bin/python -m qwen_dataset.workbench import-batch {batch}\n"
        "    (any batch the pipeline pre-annotated; new batches arrive through inbox/<batch>/ or the upload API)"
    )
