"""Importing a batch into the workbench: one work item per frame and task, assigned to annotators.

Every frame goes to one annotator; a sample of frames (the admin's double-blind rate, default
10 %) goes to two annotators who never see each other's work. The choices are a pure function of
``sha256(seed | frame_id)`` and the list of active annotators (ordered by id), so importing the
same batch again, or on another server with the same accounts, gives the same assignment: the
first 8 bytes of the hash, read as a fraction of 2**64, pick double-blind frames (``< rate``), the
next 8 pick the first annotator, the 8 after that the second (never the first). All tasks of a
frame go to the same annotator(s).

The items come from the pipeline's manifests: ``manifests/frames/<batch>.parquet`` (sizes, blob)
and ``manifests/ai_annotations/<batch>.parquet`` (the pre-annotations the editor starts from; a
failed pre-annotation gives an item that starts empty). Every video gets one ``video_event`` item,
filed under its first sampled frame, whether or not a backend pre-annotated its events (the CPU
backend does not: that item starts empty); its context (duration, sampled frames, shot cuts and
audio changes, :mod:`.video`) is stored with it, scanning the video file once when the
pre-annotation did not. Re-importing adds only items that are new.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from qwen_dataset.db.models import BatchImport, HumanAnnotation, ItemStatus, ReviewState, Role, User, WorkItem
from qwen_dataset.records import AnnotationStatus, FrameKind, Source, Task, load_payload
from qwen_dataset.store.blobs import BlobStore
from qwen_dataset.store.inbox import BATCH_NAME
from qwen_dataset.store.layout import StorageLayout
from qwen_dataset.store.paths import read_parquet
from qwen_dataset.workbench import video
from qwen_dataset.workbench.admin_settings import ReviewSettings
from qwen_dataset.workbench.editor import EDITABLE_TASKS

FRAMES_ASSET = "frames"
AI_ASSET = "ai_annotations"
UPLOADS_ASSET = "raw_uploads"
#: ``ai_status`` of an item no backend pre-annotated (beside the AI rows' ``ok`` and ``failed``).
NO_PRELABEL = "none"


class ImportProblem(ValueError):
    """The batch cannot be imported; the message says what to do first."""


@dataclasses.dataclass(frozen=True)
class ImportSummary:
    batch: str
    items_created: int
    items_existing: int
    double_blind_items: int
    skipped_tasks: dict[str, int]  # tasks the workbench does not know -> rows left out
    per_annotator: dict[str, int]  # username -> annotations assigned in this import


def item_id_for(batch: str, frame_id: str, task: str) -> str:
    return hashlib.sha256(f"{batch}|{frame_id}|{task}".encode()).hexdigest()[:32]


def new_annotation_id() -> str:
    # Random, not derived from (frame, author): an id says nothing about who else annotated the frame.
    return secrets.token_hex(16)


@dataclasses.dataclass(frozen=True)
class FrameAssignment:
    double_blind: bool
    annotators: tuple[int, ...]  # positions in the annotator list


def assign_frame(frame_id: str, annotator_count: int, double_rate: float, seed: str) -> FrameAssignment:
    """Which annotators (positions among ``annotator_count``) get ``frame_id``; deterministic."""
    if annotator_count < 1:
        raise ImportProblem(
            "there are no active annotators: an admin must create annotator accounts before importing a batch"
        )
    digest = hashlib.sha256(f"{seed}|{frame_id}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64
    first = int.from_bytes(digest[8:16], "big") % annotator_count
    if draw >= double_rate or annotator_count < 2:
        return FrameAssignment(False, (first,))
    second = (first + 1 + int.from_bytes(digest[16:24], "big") % (annotator_count - 1)) % annotator_count
    return FrameAssignment(True, (first, second))


def read_manifests(layout: StorageLayout, batch: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    if not BATCH_NAME.match(batch):
        raise ImportProblem(f"{batch!r} is not a batch id (letters, digits, '.', '_', '-'; at most 128 characters)")
    paths = {asset: layout.manifest(asset, batch) for asset in (FRAMES_ASSET, AI_ASSET)}
    missing = [asset for asset, path in paths.items() if not path.exists()]
    if missing:
        raise ImportProblem(
            f"batch {batch!r} has no {' and '.join(missing)} manifest yet: materialize "
            f"{', '.join(missing)} for this batch in Dagster first"
        )
    return read_parquet(paths[FRAMES_ASSET]), read_parquet(paths[AI_ASSET])


def upload_names(layout: StorageLayout, batch: str) -> dict[str, str]:
    """``upload_id`` -> the uploaded file's (sanitized) name, from the batch's upload manifest;
    empty when that manifest is not there (the queue then shows frame ids)."""
    path = layout.manifest(UPLOADS_ASSET, batch)
    if not path.exists():
        return {}
    uploads = read_parquet(path)
    return {str(upload): str(name) for upload, name in zip(uploads["upload_id"], uploads["original_name"]) if upload}


def source_name(names: Mapping[str, str], frame: Any) -> str:
    """The name the queue shows for a frame: its file's name, with the page of a PDF page."""
    name = names.get(str(frame.upload_id), "")
    page = getattr(frame, "page", None)
    if name and page is not None and pd.notna(page):
        return f"{name} (page {int(page)})"
    return name


def active_annotators(session: Session) -> list[User]:
    return list(
        session.scalars(select(User).where(User.role == Role.ANNOTATOR, User.active.is_(True)).order_by(User.id))
    )


@dataclasses.dataclass(frozen=True)
class _NoPrelabel:
    """Stands for the AI row of a video no backend pre-annotated (the fields :func:`_new_item` reads)."""

    frame_id: str
    task: str = Task.VIDEO_EVENT.value
    annotation_id: str = ""
    author: str = ""
    template_version: str = ""
    status: str = NO_PRELABEL
    error: str = "no pre-annotation: the prelabel backend did not mark this video's events; mark them from scratch"
    payload: str = "{}"


def _video_frames(frames: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The sampled frames of each video (``upload_id``), in time order."""
    video = frames[frames["kind"] == FrameKind.VIDEO_FRAME.value].sort_values(["upload_id", "t", "frame_id"])
    return {str(upload_id): group for upload_id, group in video.groupby("upload_id", sort=False)}


def _rows_to_import(ai: pd.DataFrame, videos: dict[str, pd.DataFrame]) -> list[Any]:
    """The AI rows to make items of, plus one stand-in per video without a video_event row."""
    editable = ai[ai["task"].isin(EDITABLE_TASKS)].sort_values(["frame_id", "task"], kind="stable")
    rows: list[Any] = list(editable.itertuples(index=False))
    described = set(editable.loc[editable["task"] == Task.VIDEO_EVENT.value, "frame_id"])
    for members in videos.values():
        anchor = str(members["frame_id"].iloc[0])
        if anchor not in described:
            rows.append(_NoPrelabel(anchor))
    return sorted(rows, key=lambda row: (row.frame_id, row.task))


def _video_context(layout: StorageLayout, upload_id: str, members: pd.DataFrame | None, ai_payload: str) -> str:
    """The stored context of a video item (see :mod:`.video`)."""
    members = members if members is not None else pd.DataFrame(columns=["t", "frame_id", "duration"])
    times = [(float(t), str(frame_id)) for t, frame_id in zip(members["t"], members["frame_id"]) if pd.notna(t)]
    durations = members["duration"].dropna() if "duration" in members else pd.Series(dtype=float)
    try:
        path: Path | None = layout.blobs.local_path(BlobStore.uri_for(upload_id))
    except (ValueError, FileNotFoundError):
        path = None  # no video file to scan: the AI's anchors (if any) are all there is
    context = video.context_for_video(
        times, float(durations.max()) if len(durations) else None, load_payload(ai_payload), path
    )
    return context.to_json()


def import_batch(
    session: Session, layout: StorageLayout, batch: str, settings: ReviewSettings, imported_by: str
) -> ImportSummary:
    """Create the batch's work items and assignments (the caller commits)."""
    frames, ai = read_manifests(layout, batch)
    annotators = active_annotators(session)
    frame_rows = {row.frame_id: row for row in frames.drop_duplicates("frame_id").itertuples(index=False)}
    videos = _video_frames(frames)
    names = upload_names(layout, batch)
    editable = _rows_to_import(ai, videos)
    skipped = ai.loc[~ai["task"].isin(EDITABLE_TASKS), "task"].value_counts().to_dict()
    unknown = sorted({row.frame_id for row in editable} - set(frame_rows))
    if unknown:
        raise ImportProblem(
            f"{len(unknown)} pre-annotated frame(s) are missing from the frames manifest "
            f"(first: {unknown[:3]}); rematerialize frames and ai_annotations for {batch!r}"
        )
    existing = set(session.scalars(select(WorkItem.item_id).where(WorkItem.batch == batch)))
    items: list[WorkItem] = []
    assignments: list[HumanAnnotation] = []
    per_annotator: dict[str, int] = {}
    for row in editable:
        item_id = item_id_for(batch, row.frame_id, row.task)
        if item_id in existing:
            continue
        existing.add(item_id)
        choice = assign_frame(row.frame_id, len(annotators), settings.double_rate, settings.seed)
        frame = frame_rows[row.frame_id]
        item = _new_item(item_id, batch, frame, row, choice.double_blind)
        item.source_name = source_name(names, frame)
        item.preview_uri = item.blob_uri  # the picture; a video item's blob becomes the video below
        if row.task == Task.VIDEO_EVENT.value:
            item.blob_uri = BlobStore.uri_for(frame.upload_id)  # the video itself, played in the editor
            upload_id = str(frame.upload_id)
            item.context = _video_context(layout, upload_id, videos.get(upload_id), item.ai_payload)
        items.append(item)
        for slot, position in enumerate(choice.annotators, start=1):
            user = annotators[position]
            assignments.append(_new_assignment(item, user, slot if choice.double_blind else None))
            per_annotator[user.username] = per_annotator.get(user.username, 0) + 1
    # Items first: without ORM relationships the flush does not order the two tables by their foreign key.
    session.add_all(items)
    session.flush()
    session.add_all(assignments)
    _record_import(session, batch, settings, imported_by, len(items))
    doubles = sum(item.double_blind for item in items)
    return ImportSummary(
        batch,
        len(items),
        len(existing) - len(items),
        doubles,
        {str(k): int(v) for k, v in skipped.items()},
        per_annotator,
    )


def _new_item(item_id: str, batch: str, frame, ai_row, double_blind: bool) -> WorkItem:
    ok = ai_row.status == AnnotationStatus.OK.value
    return WorkItem(
        item_id=item_id,
        batch=batch,
        frame_id=frame.frame_id,
        upload_id=frame.upload_id,
        task=ai_row.task,
        kind=frame.kind,
        width=int(frame.width),
        height=int(frame.height),
        blob_uri=frame.enhanced_uri if frame.low_light and frame.enhanced_uri else frame.blob_uri,
        ai_annotation_id=ai_row.annotation_id,
        ai_author=ai_row.author,
        ai_template_version=ai_row.template_version,
        ai_status=ai_row.status,
        ai_error=ai_row.error or "",
        ai_payload=ai_row.payload if ok else "{}",
        double_blind=double_blind,
        status=ItemStatus.OPEN,
        disagreement="",
    )


def human_row(
    item: WorkItem, *, source: str, author: str, template_version: str, payload: str, **state: object
) -> HumanAnnotation:
    """A new row of the item's annotation by ``author``; ``state`` sets the review fields
    (``state``, ``assignee_id``, ``slot``, ``note``, ``submitted_at``)."""
    return HumanAnnotation(
        annotation_id=new_annotation_id(),
        frame_id=item.frame_id,
        upload_id=item.upload_id,
        batch=item.batch,
        task=item.task,
        source=source,
        author=author,
        template_version=template_version,
        payload=payload,
        item_id=item.item_id,
        **state,
    )


def _new_assignment(item: WorkItem, user: User, slot: int | None) -> HumanAnnotation:
    """An annotator's draft, starting from the AI's pre-annotation."""
    return human_row(
        item,
        source=Source.HUMAN.value,
        author=user.username,
        template_version=item.ai_template_version,
        payload=item.ai_payload,
        state=ReviewState.DRAFT,
        assignee_id=user.id,
        slot=slot,
        note="",
    )


def _record_import(session: Session, batch: str, settings: ReviewSettings, imported_by: str, created: int) -> None:
    record = session.get(BatchImport, batch)
    if record is None:
        session.add(
            BatchImport(
                batch=batch,
                double_rate=str(settings.double_rate),
                seed=settings.seed,
                items=created,
                imported_by=imported_by,
            )
        )
    else:
        record.items += created
