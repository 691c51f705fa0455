"""Small builders of manifest rows for unit tests."""

from __future__ import annotations

import pandas as pd

from qwen_dataset.records import (
    AnnotationRecord,
    FrameRecord,
    annotation_id_for,
    dump_payload,
    frame_id_for,
    to_frame,
)


def frame(index: int = 0, width: int = 200, height: int = 100, upload: str = "u" * 64, **overrides) -> FrameRecord:
    values = dict(
        frame_id=frame_id_for(upload, index),
        upload_id=upload,
        batch="b1",
        kind="image",
        index=index,
        page=None,
        t=None,
        width=width,
        height=height,
        blob_uri=f"blobs/x{index}",
        low_light=False,
        mean_luma=120.0,
        enhanced_uri="",
    )
    values.update(overrides)
    return FrameRecord(**values)


def annotation(
    frame_record: FrameRecord,
    regions: list[dict],
    source: str = "ai",
    author: str = "rapidocr",
    task: str = "ocr",
    status: str = "ok",
    created_at: str = "2026-01-01T00:00:00+00:00",
) -> AnnotationRecord:
    return AnnotationRecord(
        annotation_id=annotation_id_for(frame_record.frame_id, task, source, author),
        frame_id=frame_record.frame_id,
        upload_id=frame_record.upload_id,
        batch=frame_record.batch,
        task=task,
        source=source,
        author=author,
        template_version="v1",
        created_at=created_at,
        status=status,
        error="" if status == "ok" else "boom",
        payload=dump_payload({"regions": regions}),
        reviewed=False,
    )


def region(bbox, text="hello", confidence=0.9, order=0) -> dict:
    return {"bbox": list(bbox), "text": text, "confidence": confidence, "language": "en", "reading_order": order}


def frames_df(*records: FrameRecord) -> pd.DataFrame:
    return to_frame(records, FrameRecord)


def annotations_df(*records: AnnotationRecord) -> pd.DataFrame:
    return to_frame(records, AnnotationRecord)
