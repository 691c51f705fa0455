"""What happens to an annotation: drafts, submission, agreement, arbitration and rejection.

States (:class:`~qwen_dataset.db.models.ReviewState`) of an annotator's row and the item's
status (:class:`~qwen_dataset.db.models.ItemStatus`):

* every save of a draft checks the version the client edited (optimistic concurrency): a stale
  version raises :class:`StaleVersion`, carrying the current one;
* submitting a single-annotated item makes its row ``final`` (item ``final``);
* submitting one version of a double-blind item makes it ``submitted``; when both are in, they are
  compared (:func:`~qwen_dataset.workbench.consensus.compare_versions`): if they agree, the version
  submitted FIRST becomes ``final`` (the other stays ``submitted``, kept for agreement statistics)
  and the item is ``final``; otherwise the item goes to ``arbitration`` with the reasons, whose A
  and B are the versions by slot (as the reviewer's page labels them), whoever submitted first;
* a reviewer resolves an arbitration by accepting version A, B or the AI's, or by saving a merged
  version: a new ``source="arbitrated"`` row, ``final``;
* a reviewer may send a final single-annotated row back to its annotator with a reason (back to
  ``draft``, the item ``open``).

Annotators see only ``draft`` or ``submitted`` for their own rows (:func:`annotator_state`): a
single item's row is ``final`` at once while a double-blind one waits as ``submitted``, so the real
state would tell them which items are double-blind. Reviewers and admins see the real state.

Writes that change an item first update the item row (a no-op update): on PostgreSQL that locks
the row, on SQLite it takes the write lock, so two annotators submitting the two halves of a
double-blind item at the same moment are serialized and the second one sees the first.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Table, bindparam, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from qwen_dataset.db.engine import autocommit_connection
from qwen_dataset.db.models import HumanAnnotation, ItemStatus, ReviewState, User, WorkItem
from qwen_dataset.records import Source
from qwen_dataset.workbench.admin_settings import load_settings
from qwen_dataset.workbench.assignment import human_row
from qwen_dataset.workbench.consensus import compare_versions
from qwen_dataset.workbench.editor import from_results


class WorkflowError(Exception):
    """A request that the current state does not allow; ``status`` is the HTTP status to answer."""

    status = 409

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class StaleVersion(WorkflowError):
    """The client edited an older version than the stored one."""


class NotFound(WorkflowError):
    status = 404


class Invalid(WorkflowError):
    status = 422


def _now() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _lock_item(session: Session, item_id: str) -> WorkItem:
    session.execute(update(WorkItem).where(WorkItem.item_id == item_id).values(status=WorkItem.status))
    item = session.get(WorkItem, item_id, populate_existing=True)
    if item is None:
        raise NotFound(f"work item {item_id} does not exist")
    return item


def annotator_state(state: str) -> str:
    """The state an annotator is shown for their own row: ``draft``, or ``submitted`` for anything
    they submitted (whether it is ``final`` yet would reveal whether the item is double-blind)."""
    return ReviewState.DRAFT if state == ReviewState.DRAFT else ReviewState.SUBMITTED


def _stale(annotation: HumanAnnotation) -> StaleVersion:
    return _stale_version(annotation.version, annotation.state)


def _stale_version(stored_version: int, state: str) -> StaleVersion:
    return StaleVersion(
        f"this annotation was changed elsewhere (now version {stored_version}); reload it to see the current "
        "version, then redo your change",
        current_version=stored_version,
        state=annotator_state(state),
    )


def own_annotation(session: Session, annotation_id: str, user: User) -> HumanAnnotation:
    """The user's own assigned annotation; anyone else's (or none) is "not found", never "forbidden",
    so ids of other annotators' work cannot be probed."""
    annotation = session.get(HumanAnnotation, annotation_id)
    if annotation is None or annotation.assignee_id != user.id or annotation.item_id is None:
        raise NotFound("no such annotation among your assignments")
    return annotation


def _assigned_item_id(annotation: HumanAnnotation) -> str:
    """The item of a row :func:`own_annotation` returned (it checked that the row has one)."""
    assert annotation.item_id is not None, "own_annotation returns rows of an item only"
    return annotation.item_id


def assigned_item(session: Session, annotation: HumanAnnotation) -> WorkItem:
    """The work item of a row :func:`own_annotation` returned."""
    item_id = _assigned_item_id(annotation)
    item = session.get(WorkItem, item_id)
    if item is None:
        raise NotFound(f"work item {item_id} does not exist")
    return item


def _check_editable(state: str, version: int, stored_version: int) -> None:
    """Refuse an edit of a row that is no longer a draft, or of an older version than the stored one."""
    if state != ReviewState.DRAFT:
        shown = annotator_state(state)
        raise WorkflowError(
            f"this annotation is {shown} and can no longer be edited", state=shown, current_version=stored_version
        )
    if version != stored_version:
        raise _stale_version(stored_version, state)


def _apply_results(session: Session, annotation: HumanAnnotation, item: WorkItem, results: Any, version: int) -> None:
    _check_editable(annotation.state, version, annotation.version)
    if results is not None:
        converted = from_results(item, results)
        annotation.payload = converted.payload
        annotation.template_version = converted.template_version


@dataclasses.dataclass(frozen=True)
class SavedDraft:
    annotation_id: str
    version: int
    state: str


_ANNOTATIONS: Table = HumanAnnotation.__table__  # type: ignore[assignment]  # declarative tables are Tables
_ITEMS: Table = WorkItem.__table__  # type: ignore[assignment]
#: What a save converts its results against: the item's frame, task and context.
_ITEM_FIELDS: tuple[str, ...] = (
    "item_id",
    "batch",
    "frame_id",
    "upload_id",
    "task",
    "kind",
    "width",
    "height",
    "blob_uri",
    "ai_payload",
    "context",
)
# Built once: a save is the hottest request, and compiling its statements anew cost more than running them.
_DRAFT_ROW = (
    select(
        _ANNOTATIONS.c.assignee_id, _ANNOTATIONS.c.state, _ANNOTATIONS.c.version, *(_ITEMS.c[f] for f in _ITEM_FIELDS)
    )
    .join_from(_ANNOTATIONS, _ITEMS, _ITEMS.c.item_id == _ANNOTATIONS.c.item_id)
    .where(_ANNOTATIONS.c.annotation_id == bindparam("annotation_id"))
)
_DRAFT_STATE = select(_ANNOTATIONS.c.assignee_id, _ANNOTATIONS.c.state, _ANNOTATIONS.c.version).where(
    _ANNOTATIONS.c.annotation_id == bindparam("annotation_id")
)


def _save_statement(*fields: str):
    return (
        update(_ANNOTATIONS)
        .where(
            _ANNOTATIONS.c.annotation_id == bindparam("row_id"),
            _ANNOTATIONS.c.assignee_id == bindparam("row_assignee"),
            _ANNOTATIONS.c.state == ReviewState.DRAFT.value,
            _ANNOTATIONS.c.version == bindparam("held_version"),
        )
        .values(version=_ANNOTATIONS.c.version + 1, **{field: bindparam(f"new_{field}") for field in fields})
        .returning(_ANNOTATIONS.c.version, _ANNOTATIONS.c.state)
    )


_SAVE_RESULTS = _save_statement("payload", "template_version", "updated_at")
_SAVE_UNCHANGED = _save_statement("updated_at")  # a save without changes still proves the client was current


def save_draft(session: Session, user: User, annotation_id: str, version: int, results: Any) -> SavedDraft:
    """Store the editor's current results as the draft; returns its new version, stored for good.

    The hot path of the workbench (every edit is saved at once): one read of the row and its
    item, the conversion, and one ``UPDATE ... WHERE version = :version RETURNING``, whose
    condition is the optimistic-concurrency check itself: a writer that got in between the read
    and the update leaves it matching no row, and the client gets the 409 of a stale version.
    Being a single statement, the update needs no transaction around it: both run in autocommit
    (on PostgreSQL, no BEGIN and COMMIT round trips), and the update is durable when it returns.
    """
    bind = session.get_bind()
    with autocommit_connection(bind if isinstance(bind, Engine) else bind.engine) as connection:
        found = connection.execute(_DRAFT_ROW, {"annotation_id": annotation_id}).first()
        if found is None or found.assignee_id != user.id:
            raise NotFound("no such annotation among your assignments")
        _check_editable(found.state, version, found.version)
        values: dict[str, Any] = {"row_id": annotation_id, "row_assignee": user.id, "held_version": version}
        values["new_updated_at"] = _now()
        statement = _SAVE_UNCHANGED
        if results is not None:
            item = WorkItem(**{field: getattr(found, field) for field in _ITEM_FIELDS})  # never added to the session
            converted = from_results(item, results)
            values.update(new_payload=converted.payload, new_template_version=converted.template_version)
            statement = _SAVE_RESULTS
        saved = connection.execute(statement, values).first()
        if saved is None:  # changed (or submitted) between the read and the update
            current = connection.execute(_DRAFT_STATE, {"annotation_id": annotation_id}).first()
            if current is None or current.assignee_id != user.id:
                raise NotFound("this annotation was deleted meanwhile")
            _check_editable(current.state, version, current.version)
            raise _stale_version(current.version, current.state)  # not reached: versions only grow
    return SavedDraft(annotation_id, saved.version, saved.state)


def submit(session: Session, user: User, annotation_id: str, version: int, results: Any = None) -> HumanAnnotation:
    """Save (if ``results`` is given) and submit; settles the item when it can be settled."""
    owned = own_annotation(session, annotation_id, user)
    item = _lock_item(session, _assigned_item_id(owned))
    # Read again under the item's lock: the other half of a double-blind item may have changed it.
    annotation = session.get(HumanAnnotation, annotation_id, populate_existing=True)
    if annotation is None:
        raise NotFound("no such annotation among your assignments")
    _apply_results(session, annotation, item, results, version)
    annotation.submitted_at = _now()
    annotation.note = ""
    if item.double_blind:
        annotation.state = ReviewState.SUBMITTED
        session.flush()
        _settle_double(session, item)
    else:
        annotation.state = ReviewState.FINAL
        item.status = ItemStatus.FINAL
    _commit(session, annotation)
    return annotation


def _commit(session: Session, annotation: HumanAnnotation) -> None:
    try:
        session.commit()
    except StaleDataError:
        session.rollback()
        current = session.get(HumanAnnotation, annotation.annotation_id, populate_existing=True)
        if current is None:
            raise NotFound("this annotation was deleted meanwhile") from None
        raise _stale(current) from None


def versions_of(session: Session, item: WorkItem) -> list[HumanAnnotation]:
    """The annotators' rows of an item, by slot."""
    return list(
        session.scalars(
            select(HumanAnnotation)
            .where(HumanAnnotation.item_id == item.item_id, HumanAnnotation.assignee_id.is_not(None))
            .order_by(HumanAnnotation.slot, HumanAnnotation.annotation_id)
        )
    )


def _submitted_at(row: HumanAnnotation) -> datetime:
    assert row.submitted_at is not None, "an assigned row past draft was submitted"
    return as_utc(row.submitted_at)


def _settle_double(session: Session, item: WorkItem) -> None:
    rows = versions_of(session, item)
    if len(rows) < 2 or any(row.state == ReviewState.DRAFT for row in rows):
        return
    first = min(rows[:2], key=lambda row: (_submitted_at(row), row.slot or 0))
    settings = load_settings(session)
    # In slot order: the reasons' "A" and "B" (and their box numbers) are the reviewer's A and B.
    reasons = compare_versions(
        item.task,
        rows[0].payload,
        rows[1].payload,
        settings.agreement_iou,
        min_tiou=settings.agreement_tiou,
        min_text_similarity=settings.agreement_text,
    )
    if reasons:
        item.status = ItemStatus.ARBITRATION
        item.disagreement = "; ".join(reasons)
    else:
        first.state = ReviewState.FINAL
        item.status = ItemStatus.FINAL
        item.disagreement = ""


CHOICES = ("a", "b", "ai")


@dataclasses.dataclass(frozen=True)
class Arbitration:
    item: WorkItem
    version_a: HumanAnnotation
    version_b: HumanAnnotation


def arbitration_of(session: Session, item_id: str) -> Arbitration:
    item = session.get(WorkItem, item_id)
    if item is None or not item.double_blind:
        raise NotFound(f"no double-blind item {item_id}")
    rows = versions_of(session, item)
    if len(rows) < 2:
        raise NotFound(f"item {item_id} does not have two versions")
    return Arbitration(item, rows[0], rows[1])


def resolve(
    session: Session, reviewer: User, item_id: str, choice: str | None = None, results: Any = None
) -> HumanAnnotation:
    """Make the arbitrated version final: version ``a``/``b``/``ai`` as it is, or ``results`` (a merge)."""
    if (choice is None) == (results is None):
        raise Invalid("send either 'choice' (one of a, b, ai) or 'result' (the merged version), not both or neither")
    if choice is not None and choice not in CHOICES:
        raise Invalid(f"choice must be one of {list(CHOICES)}, got {choice!r}")
    item = _lock_item(session, item_id)
    if item.status != ItemStatus.ARBITRATION:
        raise WorkflowError(f"item {item_id} is {item.status}, not waiting for arbitration", item_status=item.status)
    arbitration = arbitration_of(session, item_id)
    if results is not None:
        converted = from_results(item, results)
        payload, template_version = converted.payload, converted.template_version
    elif choice == "ai":
        payload, template_version = item.ai_payload, item.ai_template_version
    else:
        chosen = arbitration.version_a if choice == "a" else arbitration.version_b
        payload, template_version = chosen.payload, chosen.template_version
    row = human_row(
        item,
        source=Source.ARBITRATED.value,
        author=reviewer.username,
        template_version=template_version,
        payload=payload,
        state=ReviewState.FINAL,
        assignee_id=None,
        slot=None,
        note=f"arbitrated: {choice or 'merged'}",
        submitted_at=_now(),
    )
    session.add(row)
    item.status = ItemStatus.FINAL
    session.commit()
    return row


def final_row(session: Session, item: WorkItem) -> HumanAnnotation | None:
    return session.scalars(
        select(HumanAnnotation).where(
            HumanAnnotation.item_id == item.item_id, HumanAnnotation.state == ReviewState.FINAL
        )
    ).first()


def reject(session: Session, reviewer: User, item_id: str, reason: str) -> HumanAnnotation:
    """Send a final single-annotated item back to its annotator (draft again, with the reason)."""
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("give a reason: the annotator sees it next to the item")
    item = _lock_item(session, item_id)
    if item.double_blind:
        raise WorkflowError("double-blind items are settled by agreement or arbitration, not sent back")
    row = final_row(session, item) if item.status == ItemStatus.FINAL else None
    if row is None or row.assignee_id is None:
        raise WorkflowError(f"item {item_id} has no final annotator version to send back (status {item.status})")
    row.state = ReviewState.DRAFT
    row.note = f"{reason} (sent back by {reviewer.username})"
    row.submitted_at = None
    item.status = ItemStatus.OPEN
    session.commit()
    return row
