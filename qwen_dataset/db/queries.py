"""What the pipeline reads from the annotation database: a batch's human rows as annotation records,
and a fingerprint per batch that changes when reviews are finalized.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import (
    func,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from qwen_dataset.db.models import HumanAnnotation, ReviewState
from qwen_dataset.records import AnnotationRecord, AnnotationStatus, to_frame


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
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
