"""The annotation database: where human work lives.

SQLAlchemy 2.x models; a SQLite file by default, PostgreSQL by URL
(``postgresql+psycopg2://user@host/db``). The review workbench (:mod:`qwen_dataset.workbench`)
writes here; the ``human_corrections`` asset reads the final rows of a batch with
:func:`final_annotations`.

Schema changes are Alembic migrations (``alembic/versions/``); :func:`make_engine` upgrades the
database to the newest revision before returning, so every process (the Dagster code location,
the workbench, a test) sees the schema its code expects. A database created before migrations
existed (only ``human_annotations``, made by ``create_all``) is stamped at the first revision and
upgraded from there. ``alembic upgrade head`` with ``QWEN_DATABASE_URL`` set does the same by hand.

Tables:

=====================  =========================================================================
``human_annotations``  one human, imported or arbitrated annotation of a frame for a task; the
                       workbench keeps one row per assignment (the annotator's version) and one
                       ``source="arbitrated"`` row per arbitrated item
``work_items``         one (batch, frame, task) to annotate, with the frame's size and the AI's
                       pre-annotation it starts from
``users``              workbench accounts (annotator / reviewer / admin), argon2 password hashes
``api_tokens``         machine tokens (upload, batch import), stored as SHA-256 of the secret
``workbench_settings`` admin settings (double-blind rate, agreement threshold), key -> JSON
``template_overrides`` admin edits of the prelabel templates (see :mod:`qwen_dataset.workbench.templates_admin`)
``batch_imports``      which batches were imported into the workbench, with the settings used
=====================  =========================================================================
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from qwen_dataset.records import AnnotationRecord, AnnotationStatus, to_frame

REPO_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = REPO_ROOT / "alembic"
ALEMBIC_INI = REPO_ROOT / "alembic.ini"
#: The revision whose schema equals what ``create_all`` made before migrations existed.
BASELINE_REVISION = "0001_human_annotations"
# Any constant works: it only has to be the same in every process migrating the same server.
_PG_MIGRATION_LOCK = 0x51_57_45_4E


class Base(DeclarativeBase):
    pass


class ReviewState:
    DRAFT = "draft"  # saved while an annotator works; never exported
    SUBMITTED = "submitted"  # waiting for review or arbitration
    FINAL = "final"  # accepted: the pipeline uses it


class Role:
    ANNOTATOR = "annotator"
    REVIEWER = "reviewer"
    ADMIN = "admin"
    ALL = ("annotator", "reviewer", "admin")


class ItemStatus:
    OPEN = "open"  # some assigned annotation is not submitted yet
    ARBITRATION = "arbitration"  # two submitted versions disagree: a reviewer decides
    FINAL = "final"  # one version is final


def _now() -> datetime:
    return datetime.now(timezone.utc)


class User(Base):
    """A workbench account."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class ApiToken(Base):
    """A machine credential; only the SHA-256 of the secret is stored (the secret is random, 256 bits)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # first characters, to recognise a token in a list
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class WorkbenchSetting(Base):
    """One admin setting; ``value`` is JSON."""

    __tablename__ = "workbench_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)


class TemplateOverride(Base):
    """An admin's edit of one prelabel template: the four files' contents."""

    __tablename__ = "template_overrides"

    task: Mapped[str] = mapped_column(String(32), primary_key=True)
    template_yaml: Mapped[str] = mapped_column(Text)
    prompt: Mapped[str] = mapped_column(Text)
    schema_json: Mapped[str] = mapped_column(Text)
    example_json: Mapped[str] = mapped_column(Text)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)


class BatchImport(Base):
    """A batch imported into the workbench, with the sampling settings it was assigned under."""

    __tablename__ = "batch_imports"

    batch: Mapped[str] = mapped_column(String(200), primary_key=True)
    double_rate: Mapped[str] = mapped_column(String(32))
    seed: Mapped[str] = mapped_column(String(64))
    items: Mapped[int] = mapped_column(Integer, default=0)
    imported_by: Mapped[str] = mapped_column(String(100), default="")
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class WorkItem(Base):
    """One frame of a batch to annotate for one task, starting from the AI's pre-annotation."""

    __tablename__ = "work_items"

    item_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    batch: Mapped[str] = mapped_column(String(200), index=True)
    frame_id: Mapped[str] = mapped_column(String(64))
    upload_id: Mapped[str] = mapped_column(String(64))
    task: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    blob_uri: Mapped[str] = mapped_column(String(300))
    ai_annotation_id: Mapped[str] = mapped_column(String(64), default="")
    ai_author: Mapped[str] = mapped_column(String(200), default="")
    ai_template_version: Mapped[str] = mapped_column(String(64), default="")
    ai_status: Mapped[str] = mapped_column(String(16), default="ok")
    ai_error: Mapped[str] = mapped_column(Text, default="")
    ai_payload: Mapped[str] = mapped_column(Text, default="{}")
    double_blind: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default=ItemStatus.OPEN, index=True)
    disagreement: Mapped[str] = mapped_column(Text, default="")  # why the two versions disagree
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class HumanAnnotation(Base):
    """One human (or arbitrated) annotation of a frame for a task."""

    __tablename__ = "human_annotations"

    annotation_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    frame_id: Mapped[str] = mapped_column(String(64), index=True)
    upload_id: Mapped[str] = mapped_column(String(64))
    batch: Mapped[str] = mapped_column(String(200), index=True)
    task: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16), default="human")
    author: Mapped[str] = mapped_column(String(200))
    template_version: Mapped[str] = mapped_column(String(64), default="")
    payload: Mapped[str] = mapped_column(Text, default="{}")
    state: Mapped[str] = mapped_column(String(16), default=ReviewState.DRAFT, index=True)
    # Optimistic concurrency: every write bumps it; a writer holding an old version is refused.
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)
    # Workbench links; empty for rows written by other tools (e.g. a Label Studio import).
    item_id: Mapped[str | None] = mapped_column(ForeignKey("work_items.item_id"), nullable=True, index=True)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    slot: Mapped[int | None] = mapped_column(Integer, nullable=True)  # 1 or 2 on a double-blind item
    note: Mapped[str] = mapped_column(Text, default="")  # a reviewer's reason for sending it back
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __mapper_args__ = {"version_id_col": version}


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers work while one writer commits; busy_timeout makes a second writer wait
    # instead of failing at once with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str, *, migrate: bool = True) -> Engine:
    """Engine for ``url`` with the schema migrated to the newest Alembic revision (idempotent).

    Safe to call from several processes at once: migrations run under a lock (a PostgreSQL
    advisory lock, a file lock beside a SQLite file).
    """
    is_sqlite = url.startswith("sqlite")
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_pre_ping=True)
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    if migrate:
        upgrade_to_head(engine)
    return engine


def alembic_config(connection: Connection | None = None):
    """The Alembic configuration of this project; ``connection`` is handed to ``env.py``."""
    from alembic.config import Config

    config = Config(str(ALEMBIC_INI)) if ALEMBIC_INI.exists() else Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_MIGRATION_LOCK})
                connection.commit()
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade_to_head(engine: Engine) -> None:
    """Run every pending migration; a pre-migration database is stamped at the baseline first."""
    from alembic import command

    with _migration_lock(engine):
        with engine.begin() as connection:
            tables = set(inspect(connection).get_table_names())
            config = alembic_config(connection)
            if "alembic_version" not in tables and "human_annotations" in tables:
                command.stamp(config, BASELINE_REVISION)
            command.upgrade(config, "head")


def human_annotations(
    engine: Engine, batch: str, states: tuple[str, ...] = (ReviewState.SUBMITTED, ReviewState.FINAL)
) -> pd.DataFrame:
    """The batch's human rows in ``states`` as annotation records (manifest columns).

    By default every submitted and final row: both annotators of a double-blind item, which the
    quality report compares.
    """
    with Session(engine) as session:
        rows = session.scalars(
            select(HumanAnnotation)
            .where(HumanAnnotation.batch == batch, HumanAnnotation.state.in_(states))
            .order_by(HumanAnnotation.frame_id, HumanAnnotation.task, HumanAnnotation.annotation_id)
        ).all()
        records = [
            AnnotationRecord(
                annotation_id=row.annotation_id,
                frame_id=row.frame_id,
                upload_id=row.upload_id,
                batch=row.batch,
                task=row.task,
                source=row.source,
                author=row.author,
                template_version=row.template_version,
                created_at=row.updated_at.isoformat(timespec="seconds"),
                status=AnnotationStatus.OK,
                error="",
                payload=row.payload,
                reviewed=row.state == ReviewState.FINAL,
            )
            for row in rows
        ]
    return to_frame(records, AnnotationRecord)


def final_annotations(engine: Engine, batch: str) -> pd.DataFrame:
    """The batch's final human annotations: what the pipeline uses over the AI's."""
    return human_annotations(engine, batch, states=(ReviewState.FINAL,))


def final_fingerprints(engine: Engine) -> dict[str, str]:
    """Per batch, a fingerprint of its final annotations (how many, latest change).

    It changes when a review is finalized or edited, and when a reviewer sends final work back
    (the count drops), but not while annotators edit drafts. The corrections sensor compares it
    with what it saw last to know which batches to rerun.
    """
    query = (
        select(HumanAnnotation.batch, func.count(), func.max(HumanAnnotation.updated_at))
        .where(HumanAnnotation.state == ReviewState.FINAL)
        .group_by(HumanAnnotation.batch)
    )
    with Session(engine) as session:
        rows = session.execute(query).all()
    return {batch: f"{count}:{_aware(latest).isoformat()}" for batch, count, latest in rows}


def _aware(moment: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; they were written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
