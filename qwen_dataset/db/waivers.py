"""Gate waivers in the annotation database: recorded by an admin, read by the gate and the release.

A waiver names one batch and one gated figure, with the admin's reason, who and when, and the
figure's value and target at that moment. It is never deleted: revoking it records who and when,
and a revoked waiver no longer counts.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from qwen_dataset.db.models import GateWaiver, Role, User
from qwen_dataset.quality.gates import Waiver
from qwen_dataset.quality.report import GATED


class WaiverRefused(ValueError):
    """The waiver cannot be recorded; the message says why and what to do."""


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _as_waiver(row: GateWaiver) -> Waiver:
    return Waiver(
        batch=row.batch,
        figure=row.figure,
        reason=row.reason,
        waived_by=row.waived_by,
        waived_at=_aware(row.waived_at).isoformat(timespec="seconds"),
        value=row.value,
        target=row.target,
    )


def record_waiver(
    session: Session,
    admin: User,
    batch: str,
    figure: str,
    reason: str,
    value: float | None = None,
    target: float | None = None,
) -> Waiver:
    """Record an admin's waiver of ``figure`` for ``batch`` (the caller commits)."""
    if admin.role != Role.ADMIN or not admin.active:
        raise WaiverRefused(f"{admin.username} is not an active admin: only an admin may waive a quality gate")
    if figure not in GATED:
        raise WaiverRefused(f"{figure!r} is not a gated figure; waive one of {list(GATED)}")
    reason = (reason or "").strip()
    if len(reason) < 10:
        raise WaiverRefused("give a reason of at least 10 characters: the release's dataset card prints it")
    row = GateWaiver(batch=batch, figure=figure, reason=reason, waived_by=admin.username, value=value, target=target)
    session.add(row)
    session.flush()
    return _as_waiver(row)


def revoke_waivers(session: Session, admin: User, batch: str, figure: str) -> int:
    """Revoke the active waivers of ``figure`` for ``batch``; returns how many (the caller commits)."""
    if admin.role != Role.ADMIN or not admin.active:
        raise WaiverRefused(f"{admin.username} is not an active admin: only an admin may revoke a waiver")
    rows = session.scalars(
        select(GateWaiver).where(
            GateWaiver.batch == batch, GateWaiver.figure == figure, GateWaiver.revoked_at.is_(None)
        )
    ).all()
    for row in rows:
        row.revoked_by, row.revoked_at = admin.username, datetime.now(UTC)
    return len(rows)


def active_waivers(engine: Engine, batch: str | None = None) -> list[Waiver]:
    """The waivers that count (not revoked), of one batch or of all, oldest first."""
    query = select(GateWaiver).where(GateWaiver.revoked_at.is_(None)).order_by(GateWaiver.waived_at, GateWaiver.id)
    if batch is not None:
        query = query.where(GateWaiver.batch == batch)
    with Session(engine) as session:
        return [_as_waiver(row) for row in session.scalars(query)]


def waiver_fingerprints(engine: Engine) -> dict[str, str]:
    """Per batch, a fingerprint of its waivers (how many were recorded or revoked, the latest change):
    the corrections sensor reruns a batch when it changes."""
    latest = func.max(func.coalesce(GateWaiver.revoked_at, GateWaiver.waived_at))
    query = select(GateWaiver.batch, func.count(), func.count(GateWaiver.revoked_at), latest).group_by(GateWaiver.batch)
    with Session(engine) as session:
        rows = session.execute(query).all()
    return {batch: f"w{count}-{revoked}:{_aware(moment).isoformat()}" for batch, count, revoked, moment in rows}
