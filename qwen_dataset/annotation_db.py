"""The annotation database: where human work lives.

SQLAlchemy 2.x models; a SQLite file by default, PostgreSQL by URL
(``postgresql+psycopg2://user@host/db``). The review workbench writes here; the
``human_corrections`` asset reads the final rows of a batch.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from sqlalchemy import DateTime, Integer, String, Text, create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from qwen_dataset.records import AnnotationRecord, AnnotationStatus, to_frame


class Base(DeclarativeBase):
    pass


class ReviewState:
    DRAFT = "draft"  # saved while an annotator works; never exported
    SUBMITTED = "submitted"  # waiting for review or arbitration
    FINAL = "final"  # accepted: the pipeline uses it


def _now() -> datetime:
    return datetime.now(timezone.utc)


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

    __mapper_args__ = {"version_id_col": version}


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def make_engine(url: str) -> Engine:
    """Engine for ``url`` with the schema created (idempotent)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_pre_ping=True)
    Base.metadata.create_all(engine)
    return engine


def final_annotations(engine: Engine, batch: str) -> pd.DataFrame:
    """The batch's final human annotations as annotation records (manifest columns)."""
    with Session(engine) as session:
        rows = session.scalars(
            select(HumanAnnotation)
            .where(HumanAnnotation.batch == batch, HumanAnnotation.state == ReviewState.FINAL)
            .order_by(HumanAnnotation.frame_id, HumanAnnotation.task)
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
                reviewed=True,
            )
            for row in rows
        ]
    return to_frame(records, AnnotationRecord)
