"""An annotator's queue: their items in working order, what each row shows, how far they and
each batch have come, and which item comes next ("submit and next").

The order is the one the queue page lists (batch, frame, task). Progress counts what an
annotator may know: their own rows (drafts left, submitted), and per batch how many items are
settled (final) of all its items; that a particular item is double-blind stays hidden, since
an annotator's own state is only ``draft`` or ``submitted`` (:func:`.workflow.annotator_state`).
"""

from __future__ import annotations

import dataclasses

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from qwen_dataset.db.models import HumanAnnotation, ItemStatus, ReviewState, User, WorkItem
from qwen_dataset.workbench.workflow import annotator_state


@dataclasses.dataclass(frozen=True)
class QueueRow:
    annotation_id: str
    item_id: str
    batch: str
    frame_id: str
    task: str
    name: str  # the uploaded file's name (page of a PDF), else the frame id
    state: str  # as the annotator sees it: draft or submitted
    note: str

    @property
    def thumbnail(self) -> str:
        return f"/media/items/{self.item_id}/thumbnail"


@dataclasses.dataclass(frozen=True)
class Progress:
    """``done`` of ``total``: the annotator's rows submitted, or a batch's items final."""

    done: int
    total: int

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 100


@dataclasses.dataclass(frozen=True)
class BatchProgress:
    batch: str
    mine: Progress  # the annotator's rows of the batch, submitted
    items: Progress  # the batch's items, final


def _queue_query(user: User):
    return (
        select(WorkItem, HumanAnnotation)
        .join(HumanAnnotation, HumanAnnotation.item_id == WorkItem.item_id)
        .where(HumanAnnotation.assignee_id == user.id)
        .order_by(WorkItem.batch, WorkItem.frame_id, WorkItem.task, HumanAnnotation.annotation_id)
    )


def queue_rows(session: Session, user: User) -> list[QueueRow]:
    """The annotator's rows in queue order."""
    return [
        QueueRow(
            annotation.annotation_id,
            item.item_id,
            item.batch,
            item.frame_id,
            item.task,
            item.source_name or item.frame_id,
            annotator_state(annotation.state),
            annotation.note,
        )
        for item, annotation in session.execute(_queue_query(user)).all()
    ]


def progress_of(rows: list[QueueRow]) -> Progress:
    return Progress(sum(row.state != ReviewState.DRAFT for row in rows), len(rows))


def batch_progress(session: Session, rows: list[QueueRow]) -> list[BatchProgress]:
    """Per batch the annotator works on: their own progress, and the batch's items settled."""
    batches = sorted({row.batch for row in rows})
    if not batches:
        return []
    counts: dict[str, dict[str, int]] = {}
    for batch, status, count in session.execute(
        select(WorkItem.batch, WorkItem.status, func.count())
        .where(WorkItem.batch.in_(batches))
        .group_by(WorkItem.batch, WorkItem.status)
    ):
        counts.setdefault(batch, {})[status] = count
    return [
        BatchProgress(
            batch,
            progress_of([row for row in rows if row.batch == batch]),
            Progress(counts.get(batch, {}).get(ItemStatus.FINAL, 0), sum(counts.get(batch, {}).values())),
        )
        for batch in batches
    ]


def next_draft(rows: list[QueueRow], after: str | None) -> QueueRow | None:
    """The first draft after the row ``after`` in queue order, wrapping round to the start
    (a draft skipped earlier comes back); None when no draft is left but ``after`` itself."""
    position = next((index for index, row in enumerate(rows) if row.annotation_id == after), -1)
    ordered = rows[position + 1 :] + rows[: position + 1]
    return next((row for row in ordered if row.state == ReviewState.DRAFT and row.annotation_id != after), None)
