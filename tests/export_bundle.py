"""A real export folder of all five tasks: pictures and an H.264 video in a blob store, canonical
payloads made by the real prelabel parser, written by ``write_batch_exports`` through the same
staging path as the ``exports`` asset. The tool tests load what it writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pandas as pd
from PIL import Image

from qwen_dataset.exporters.bundle import ExportFile, write_batch_exports
from qwen_dataset.exporters.label_studio.media import media_urls
from qwen_dataset.prelabel.video_events import Boundaries, event_payload
from qwen_dataset.records import AnnotationRecord, FrameRecord, frame_id_for, to_frame
from qwen_dataset.store.layout import StorageLayout
from tests.test_exporters_formats import GUI_ANSWER, OCR_ANSWER, SPATIAL_SMALL_ANSWER, canonical, record

BATCH = "b1"
VIDEO_FPS = 10
VIDEO_SECONDS = 3
VIDEO_SIZE = (320, 180)


def picture(width: int, height: int, seed: int, fmt: str = "PNG") -> bytes:
    """A picture with some structure (gradients and a block), so decoders have real work."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), np.full_like(x, 90)], axis=-1)
    x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
    pixels[y0 : y0 + height // 4, x0 : x0 + width // 4] = (250, 250, 250)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


def h264_video(seconds: int = VIDEO_SECONDS, fps: int = VIDEO_FPS, size: tuple[int, int] = VIDEO_SIZE) -> bytes:
    """A short MP4 (H.264, yuv420p) whose colour changes every second."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.time_base = Fraction(1, fps)
        for index in range(seconds * fps):
            shade = 40 + 70 * (index // fps)
            pixels = np.full((size[1], size[0], 3), (shade, 255 - shade, 120), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


@dataclasses.dataclass(frozen=True)
class Bundle:
    layout: StorageLayout
    frames: pd.DataFrame
    annotations: pd.DataFrame
    folder: Any  # Path, or UPath on a URL root
    files: list[ExportFile]
    video_upload: str


def _frame(layout: StorageLayout, data: bytes, upload: str, index: int, size: tuple[int, int], **extra) -> FrameRecord:
    _, uri = layout.blobs.put_bytes(data)
    values = dict(
        frame_id=frame_id_for(upload, index),
        upload_id=upload,
        batch=BATCH,
        kind="image",
        index=index,
        page=None,
        t=None,
        width=size[0],
        height=size[1],
        blob_uri=uri,
        low_light=False,
        mean_luma=120.0,
        enhanced_uri="",
    )
    values.update(extra)
    return FrameRecord(**values)


def manifests(layout: StorageLayout) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Frames (two pictures, the sampled frames of one video) and final annotations of all five tasks."""
    wide_png, tall_png = picture(1280, 720, 1), picture(600, 900, 2)
    wide = _frame(layout, wide_png, hashlib.sha256(wide_png).hexdigest(), 0, (1280, 720))
    tall = _frame(layout, tall_png, hashlib.sha256(tall_png).hexdigest(), 0, (600, 900))
    video_upload, _ = layout.blobs.put_bytes(h264_video())
    video_frames = [
        _frame(
            layout, picture(*VIDEO_SIZE, 10 + i, "JPEG"), video_upload, i, VIDEO_SIZE, kind="video_frame", t=float(i)
        )
        for i in range(VIDEO_SECONDS)
    ]
    events = canonical("video_event", video_frames[0])["events"]
    times, ids = [f.t for f in video_frames], [f.frame_id for f in video_frames]
    finals: list[AnnotationRecord] = [
        record(wide, "ocr", canonical("ocr", wide, OCR_ANSWER)),
        record(tall, "ocr", {"regions": []}),
        record(wide, "gui_action", canonical("gui_action", wide, GUI_ANSWER), source="human", author="alice"),
        record(wide, "spatial", canonical("spatial", wide)),
        record(tall, "spatial", canonical("spatial", tall, SPATIAL_SMALL_ANSWER)),
        record(wide, "image_to_code", canonical("image_to_code", wide)),
        record(video_frames[0], "video_event", event_payload(events, Boundaries(), times, ids)),
        record(tall, "image_to_code", None),  # a failed prelabel: in no dataset
    ]
    frames = to_frame([wide, tall, *video_frames], FrameRecord)
    return frames, to_frame(finals, AnnotationRecord), video_upload


def write_export(
    layout: StorageLayout, frames: pd.DataFrame, annotations: pd.DataFrame, label_studio_prefix: str | None = None
) -> list[ExportFile]:
    """Write the batch's export under ``<root>/exports/b1`` through the staging path the ``exports`` asset uses."""
    folder = layout.exports(BATCH)
    media_url = media_urls(layout.root, f"exports/{BATCH}", label_studio_prefix)
    with layout.publishing(folder, mirror=True, last=["manifest.json"]) as staging:
        written = write_batch_exports(annotations, frames, layout.blobs, staging, media_url)
    return [dataclasses.replace(f, path=str(folder / Path(f.path).relative_to(staging))) for f in written]


def export_bundle(root: Path | str, label_studio_prefix: str | None = None) -> Bundle:
    """The batch's manifests on a fresh root (a folder or a URL) and its export."""
    layout = StorageLayout(root)
    layout.ensure()
    frames, annotations, video_upload = manifests(layout)
    files = write_export(layout, frames, annotations, label_studio_prefix)
    return Bundle(layout, frames, annotations, layout.exports(BATCH), files, video_upload)
