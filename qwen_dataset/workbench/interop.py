"""Label Studio interop of a whole batch, through the shared converter.

* :func:`export_batch_tasks`: the batch as a Label Studio import file - one task per frame with the
  current best annotation of ``task`` as its prediction (final human/arbitrated rows over the AI's,
  as the ``human_corrections`` asset merges them).
* :func:`import_export_file`: a Label Studio JSON export of such tasks -> final human rows of the
  annotation database (``author = label-studio:<annotator>``). Re-importing the same export updates
  the same rows (one per frame, task and author) instead of adding new ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from qwen_dataset.db.corrections import apply_corrections
from qwen_dataset.db.models import HumanAnnotation, ReviewState
from qwen_dataset.db.queries import final_annotations
from qwen_dataset.exporters.label_studio.export import to_label_studio_tasks
from qwen_dataset.exporters.label_studio.importer import from_label_studio_export
from qwen_dataset.records import AnnotationStatus, Source
from qwen_dataset.store.blobs import BlobStore
from qwen_dataset.store.layout import StorageLayout
from qwen_dataset.workbench.assignment import new_annotation_id, read_manifests


@dataclasses.dataclass(frozen=True)
class ImportReport:
    imported: int
    updated: int
    failed: list[dict[str, str]]  # frame_id, author, error


def export_batch_tasks(
    engine: Engine, layout: StorageLayout, batch: str, task: str, image_prefix: str
) -> list[dict[str, Any]]:
    frames, ai = read_manifests(layout, batch)
    merged = apply_corrections(ai, final_annotations(engine, batch))
    uris = dict(zip(frames["frame_id"], frames["blob_uri"]))
    return to_label_studio_tasks(
        merged,
        frames,
        lambda frame_id: f"{image_prefix}{uris[frame_id]}",
        task=task,
        # A video's file is its upload's blob (content-addressed by the upload id).
        video_url=lambda upload_id: f"{image_prefix}{BlobStore.uri_for(upload_id)}",
    )


def import_export_file(session: Session, layout: StorageLayout, batch: str, export_json: Any) -> ImportReport:
    """Store the human annotations of a Label Studio export as final rows of ``batch``; commits."""
    frames, _ = read_manifests(layout, batch)
    records = from_label_studio_export(export_json, frames)
    imported = updated = 0
    failed = []
    for record in records:
        if record["source"] != Source.HUMAN.value:
            continue
        if record["status"] != AnnotationStatus.OK.value or record["batch"] != batch:
            error = record["error"] or f"frame {record['frame_id']!r} is not part of batch {batch!r}"
            failed.append({"frame_id": record["frame_id"], "author": record["author"], "error": error})
            continue
        created = _upsert(session, batch, record)
        imported += created
        updated += not created
    session.commit()
    return ImportReport(imported, updated, failed)


def _upsert(session: Session, batch: str, record: dict[str, Any]) -> bool:
    existing = session.scalars(
        select(HumanAnnotation).where(
            HumanAnnotation.batch == batch,
            HumanAnnotation.frame_id == record["frame_id"],
            HumanAnnotation.task == record["task"],
            HumanAnnotation.author == record["author"],
            HumanAnnotation.assignee_id.is_(None),
            HumanAnnotation.source == Source.HUMAN.value,
        )
    ).first()
    if existing is not None:
        existing.payload, existing.template_version = record["payload"], record["template_version"]
        existing.state = ReviewState.FINAL
        return False
    session.add(
        HumanAnnotation(
            annotation_id=new_annotation_id(),
            frame_id=record["frame_id"],
            upload_id=record["upload_id"],
            batch=batch,
            task=record["task"],
            source=Source.HUMAN.value,
            author=record["author"],
            template_version=record["template_version"],
            payload=record["payload"],
            state=ReviewState.FINAL,
            note="imported from Label Studio",
        )
    )
    return True
