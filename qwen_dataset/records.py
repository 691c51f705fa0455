"""Canonical records that flow between the pipeline stages as manifest rows.

Each record is a dataclass; a manifest is a pandas DataFrame whose columns are the record's fields
(see :func:`to_frame`). Payloads are JSON strings so a manifest stays a flat Parquet table.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import pandas as pd


class MediaType(StrEnum):
    IMAGE = "image"
    PDF = "pdf"
    VIDEO = "video"
    UNKNOWN = "unknown"


class UploadStatus(StrEnum):
    OK = "ok"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"


class FrameKind(StrEnum):
    IMAGE = "image"
    PAGE = "page"
    VIDEO_FRAME = "video_frame"


class Source(StrEnum):
    AI = "ai"
    HUMAN = "human"
    ARBITRATED = "arbitrated"


# Which annotation of a frame and task is final: the reviewers' word over the annotators' over the AI's.
SOURCE_PRECEDENCE = {Source.ARBITRATED.value: 0, Source.HUMAN.value: 1, Source.AI.value: 2}


class AnnotationStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"


class Task(StrEnum):
    OCR = "ocr"
    GUI_ACTION = "gui_action"
    SPATIAL = "spatial"
    IMAGE_TO_CODE = "image_to_code"
    VIDEO_EVENT = "video_event"


def utc_now() -> str:
    """ISO-8601 UTC timestamp used for ``created_at`` provenance."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclasses.dataclass(frozen=True)
class UploadRecord:
    """One file of an inbox batch; every input file gets exactly one row."""

    upload_id: str  # sha256 of the content; empty when the file could not be read at all
    batch: str
    original_name: str  # sanitized
    media_type: str  # MediaType value, by magic bytes
    bytes: int
    status: str  # UploadStatus value
    reason: str  # why it was quarantined or which upload it duplicates; empty when ok
    blob_uri: str  # content-addressed location; empty when quarantined before storing


@dataclasses.dataclass(frozen=True)
class FrameRecord:
    """One decoded picture: an image, a PDF page, or a sampled video frame."""

    frame_id: str  # f"{upload_id[:16]}-{index:06d}": stable across reruns
    upload_id: str
    batch: str
    kind: str  # FrameKind value
    index: int
    page: int | None  # 1-based PDF page number, else None
    t: float | None  # seconds from the start of the video (presentation timestamp), else None
    width: int
    height: int
    blob_uri: str
    low_light: bool
    mean_luma: float
    enhanced_uri: str  # contrast-enhanced copy for low-light frames, else empty
    duration: float | None = None  # seconds of the whole video the frame was sampled from, else None


@dataclasses.dataclass(frozen=True)
class AnnotationRecord:
    """One annotation of one frame (or of a whole video for ``video_event``) for one task."""

    annotation_id: str
    frame_id: str
    upload_id: str
    batch: str
    task: str  # Task value
    source: str  # Source value
    author: str  # model id or user id
    template_version: str
    created_at: str
    status: str  # AnnotationStatus value: a failed prelabel is recorded, never dropped
    error: str
    payload: str  # JSON, schema per task
    reviewed: bool


def frame_id_for(upload_id: str, index: int) -> str:
    return f"{upload_id[:16]}-{index:06d}"


def annotation_id_for(frame_id: str, task: str, source: str, author: str) -> str:
    """Deterministic id: rerunning a stage rewrites the same ids instead of adding new rows."""
    digest = hashlib.sha256(f"{frame_id}|{task}|{source}|{author}".encode()).hexdigest()
    return digest[:24]


def dump_payload(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, sort_keys=True)


def load_payload(text: str) -> Any:
    return json.loads(text) if text else {}


# augmented_dataset's lineage (one row per augmented annotation) and rejected draws.
AUGMENTATION_LINEAGE_COLUMNS = [
    "frame_id",
    "annotation_id",
    "source_frame_id",
    "source_annotation_id",
    "upload_id",
    "batch",
    "task",
    "pipeline",
    "seed",
    "sample_seed",
    "augmenter",
    "params",
]
AUGMENTATION_REJECTED_COLUMNS = ["source_frame_id", "pipeline", "seed", "reason"]


def columns_of(record_type: type) -> list[str]:
    return [field.name for field in dataclasses.fields(record_type)]


def to_frame(records: Iterable[Any], record_type: type) -> pd.DataFrame:
    """Build a manifest DataFrame with the record's columns, even when there are no rows."""
    rows = [dataclasses.asdict(record) for record in records]
    return pd.DataFrame(rows, columns=columns_of(record_type))


def from_frame(frame: pd.DataFrame, record_type: type) -> list[Any]:
    """Rows of a manifest back into records (NaN becomes None)."""
    names = columns_of(record_type)
    cleaned = frame[names].astype(object).where(frame[names].notna(), None)
    return [record_type(**dict(zip(names, row))) for row in cleaned.itertuples(index=False, name=None)]
