"""Sign-in throttling per account and per address (what OWASP's authentication guidance asks for).

Failed sign-ins are counted per account name (``account:<name>``, whether or not the account
exists, so the answers do not tell which names do) and per client address (``address:<ip>``)
in the ``login_throttle`` table, which every server process shares. A key that collects
``max_failures`` failures within ``window`` is locked for ``window`` from its last failure:
sign-ins for it are answered 429 with ``Retry-After`` *before* the password is checked, so a
locked account cannot be probed at all and a flood costs no argon2 hashing (64 MiB each). A
successful sign-in clears its account's count; an address's count runs out with its window.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from qwen_dataset.db.models import LoginThrottle

KEY_LENGTH = 200


@dataclasses.dataclass(frozen=True)
class ThrottlePolicy:
    account_failures: int = 5  # per account name
    address_failures: int = 50  # per client address (a shared office address has many people)
    window: timedelta = timedelta(minutes=15)


def account_key(username: str) -> str:
    return f"account:{username}"[:KEY_LENGTH]


def address_key(address: str | None) -> str:
    return f"address:{address or 'unknown'}"[:KEY_LENGTH]


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment  # SQLite keeps no zone


def locked_for(session: Session, keys: Iterable[str], now: datetime | None = None) -> int:
    """Seconds until every one of ``keys`` may sign in again (0: none is locked)."""
    now = now or datetime.now(UTC)
    rows = session.scalars(select(LoginThrottle).where(LoginThrottle.key.in_(list(keys)))).all()
    waits = [(_aware(row.locked_until) - now).total_seconds() for row in rows if row.locked_until is not None]
    return max([math.ceil(wait) for wait in waits if wait > 0], default=0)


def record_failure(session: Session, key: str, limit: int, window: timedelta, now: datetime | None = None) -> bool:
    """Count a failed sign-in of ``key``; True when it is locked now. Commits."""
    now = now or datetime.now(UTC)
    _insert_missing(session, key, now)
    row = session.scalars(select(LoginThrottle).where(LoginThrottle.key == key).with_for_update()).one()
    if now - _aware(row.window_started_at) > window:
        row.failures, row.window_started_at = 0, now
    row.failures += 1
    locked = row.failures >= limit
    if locked:
        row.locked_until = now + window
    session.commit()
    return locked


def clear(session: Session, key: str) -> None:
    """Forget the failures of ``key`` (after a successful sign-in). Commits."""
    row = session.get(LoginThrottle, key)
    if row is not None:
        session.delete(row)
        session.commit()


def _insert_missing(session: Session, key: str, now: datetime) -> None:
    # Two failed sign-ins at once must not both insert the row: let the database skip the second.
    insert = postgres_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    values = {"key": key, "failures": 0, "window_started_at": now, "locked_until": None}
    session.execute(insert(LoginThrottle).values(**values).on_conflict_do_nothing(index_elements=["key"]))
