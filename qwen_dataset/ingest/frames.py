"""The frames stage: decode every ok upload into the pictures that get annotated.

An image becomes one frame, a PDF one frame per page, a video one frame per sampling interval.
Each frame is stored as a blob and described by a :class:`~qwen_dataset.records.FrameRecord`;
frames that are too dark also get a contrast-enhanced copy (CLAHE) for the annotators and models.

Everything streams: a PDF is rendered page by page and a video is decoded as a stream, so memory
does not grow with the page count or the length of the video.

Failures: a file that cannot be decoded raises :class:`FrameExtractionError`. When a PDF or a
video breaks part-way through, the generators first yield every frame that did decode and raise
:class:`FrameExtractionError` afterwards (a video stops at the damage; a PDF renders its other
pages first and then names the pages that failed), so the caller keeps those frames *and* can
record the failure::

    frames = []
    try:
        for frame in extract_frames(upload, blobs):
            frames.append(frame)
    except FrameExtractionError as error:
        record_failure(error.upload_id, error.message)   # ``frames`` holds what decoded
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Iterator
from contextlib import closing
from fractions import Fraction
from pathlib import Path

import av
import av.error
import cv2
import numpy as np
import pypdfium2 as pdfium
from PIL import Image, ImageOps

from qwen_dataset.records import FrameKind, FrameRecord, MediaType, UploadRecord, UploadStatus, frame_id_for
from qwen_dataset.store.blobs import BlobStore

# BT.601 luma weights for R, G, B.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
JPEG_QUALITY = 95
POINTS_PER_INCH = 72
# A video whose packets end more than this many seconds before the duration its container declares
# is reported as truncated; smaller gaps are edit-list and rounding slack.
TRUNCATION_SLACK_S = 0.5
# Containers whose sample index (and so the stream duration) is written in the header, which makes
# a missing tail detectable. Other containers estimate duration from bitrate: not trustworthy.
INDEXED_CONTAINERS = frozenset({"mov", "mp4", "m4a", "3gp", "3g2", "mj2"})
PICTURE_FORMATS = ("jpeg", "png")
# Decoders that honour skip_frame=NONREF by the bitstream's own reference flags.
NONREF_SKIPPING_CODECS = frozenset({"h264", "hevc"})


class FrameExtractionError(Exception):
    """An upload could not be decoded (completely, or from some point on).

    Raised only after every frame that did decode has been yielded.
    """

    def __init__(self, upload_id: str, message: str) -> None:
        super().__init__(f"upload {upload_id[:16] or '<unknown>'}: {message}")
        self.upload_id = upload_id
        self.message = message


class VideoDecodeError(Exception):
    """The video stream broke or ended early; raised by :func:`sample_video_times`."""


@dataclasses.dataclass(frozen=True)
class FrameOptions:
    """How uploads are turned into frames."""

    pdf_dpi: int = 150
    video_fps: float = 1.0  # sampling rate
    low_light_threshold: float = 60.0  # mean BT.601 luma (0-255) below this -> low_light
    clahe_clip_limit: float = 2.0
    clahe_tile_grid: int = 8
    video_frame_format: str = "jpeg"  # "jpeg" (quality 95) or "png"

    def __post_init__(self) -> None:
        if self.pdf_dpi <= 0:
            raise ValueError(f"pdf_dpi must be positive, got {self.pdf_dpi}")
        if self.video_fps <= 0:
            raise ValueError(f"video_fps must be positive (frames per second), got {self.video_fps}")
        if self.clahe_clip_limit <= 0 or self.clahe_tile_grid <= 0:
            raise ValueError(
                f"clahe_clip_limit and clahe_tile_grid must be positive, got "
                f"{self.clahe_clip_limit} and {self.clahe_tile_grid}"
            )
        if self.video_frame_format not in PICTURE_FORMATS:
            raise ValueError(f"video_frame_format must be one of {PICTURE_FORMATS}, got {self.video_frame_format!r}")


# --- pixels -------------------------------------------------------------------------------------


def mean_luma(rgb: np.ndarray) -> float:
    """Mean BT.601 luma (0-255) of an RGB uint8 picture.

    Luma is linear in R, G and B, so the mean of luma is the weighted mean of the channel means.

    >>> mean_luma(np.full((2, 2, 3), 100, np.uint8))
    100.0
    """
    red, green, blue, _ = cv2.mean(rgb)
    return round(LUMA_WEIGHTS[0] * red + LUMA_WEIGHTS[1] * green + LUMA_WEIGHTS[2] * blue, 6)


def enhance_low_light(rgb: np.ndarray, clip_limit: float, tile_grid: int) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (CLAHE) of the lightness channel.

    Working on L of CIELAB brightens and spreads the tones without shifting the colours.
    """
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    clahe = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tile_grid, tile_grid))
    lab[:, :, 0] = clahe.apply(np.ascontiguousarray(lab[:, :, 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def encode_picture(rgb: np.ndarray, picture_format: str) -> bytes:
    """Encode an RGB uint8 picture as PNG or JPEG (quality 95) bytes."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if picture_format == "png":
        ok, encoded = cv2.imencode(".png", bgr)
    elif picture_format == "jpeg":
        ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    else:
        raise ValueError(f"picture format must be one of {PICTURE_FORMATS}, got {picture_format!r}")
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {rgb.shape} picture as {picture_format}")
    return encoded.tobytes()


def pil_to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode as an RGB uint8 array.

    Transparency (alpha, or a palette/greyscale transparency key) is composited on white, 16-bit
    greyscale is scaled to 8 bits (Pillow's own conversion would clip it), CMYK and the rest go
    through Pillow's converters.
    """
    if image.mode.startswith("I;16") or image.mode == "I":
        return _grey_to_rgb(_sixteen_bit_to_eight(np.asarray(image)))
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
        return _grey_to_rgb(np.clip(values * scale + 0.5, 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def _sixteen_bit_to_eight(values: np.ndarray) -> np.ndarray:
    # Pillow's "I" mode is also used for 8-bit data stored as 32-bit ints: scale only real 16-bit.
    values = values.astype(np.int64)
    if values.size and values.max() > 255:
        return ((np.clip(values, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)
    return np.clip(values, 0, 255).astype(np.uint8)


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def _upright(rgb: np.ndarray, rotation_ccw: float) -> np.ndarray:
    """Apply a video's display rotation (degrees counter-clockwise), as players do."""
    quarter_turns = round(rotation_ccw / 90) % 4
    if quarter_turns == 0 or abs(rotation_ccw - 90 * round(rotation_ccw / 90)) > 1:
        return rgb
    return np.ascontiguousarray(np.rot90(rgb, k=quarter_turns))


# --- records ------------------------------------------------------------------------------------


def _frame_record(
    upload: UploadRecord,
    blobs: BlobStore,
    options: FrameOptions,
    rgb: np.ndarray,
    *,
    kind: FrameKind,
    index: int,
    page: int | None = None,
    t: float | None = None,
    duration: float | None = None,
    picture_format: str = "png",
) -> FrameRecord:
    """Store the picture (and, when dark, its enhanced copy) and describe it."""
    height, width = rgb.shape[:2]
    _, blob_uri = blobs.put_bytes(encode_picture(rgb, picture_format))
    luma = mean_luma(rgb)
    low_light = luma < options.low_light_threshold
    enhanced_uri = ""
    if low_light:
        enhanced = enhance_low_light(rgb, options.clahe_clip_limit, options.clahe_tile_grid)
        _, enhanced_uri = blobs.put_bytes(encode_picture(enhanced, "png"))
    return FrameRecord(
        frame_id=frame_id_for(upload.upload_id, index),
        upload_id=upload.upload_id,
        batch=upload.batch,
        kind=kind.value,
        index=index,
        page=page,
        t=t,
        width=int(width),
        height=int(height),
        blob_uri=blob_uri,
        low_light=bool(low_light),
        mean_luma=luma,
        enhanced_uri=enhanced_uri,
        duration=duration,
    )


# --- dispatch -----------------------------------------------------------------------------------


def extract_frames(
    upload: UploadRecord, blobs: BlobStore, options: FrameOptions = FrameOptions()
) -> Iterator[FrameRecord]:
    """Frames of one ``ok`` upload, streamed; see the module docstring for the failure contract."""
    if upload.status != UploadStatus.OK:
        raise ValueError(f"only ok uploads have frames; upload {upload.upload_id[:16]} is {upload.status}")
    try:
        source = blobs.local_path(upload.blob_uri) if upload.blob_uri else None
    except (FileNotFoundError, ValueError):
        source = None
    if source is None or not source.is_file():
        raise FrameExtractionError(
            upload.upload_id,
            f"the stored file {upload.blob_uri or '<no blob uri>'} of {upload.original_name!r} is missing "
            "under the storage root; re-ingest the batch",
        )
    if upload.media_type == MediaType.IMAGE:
        return image_frames(upload, source, blobs, options)
    if upload.media_type == MediaType.PDF:
        return pdf_frames(upload, source, blobs, options)
    if upload.media_type == MediaType.VIDEO:
        return video_frames(upload, source, blobs, options)
    raise FrameExtractionError(
        upload.upload_id,
        f"media type {upload.media_type!r} of {upload.original_name!r} has no frame extractor "
        f"(supported: image, pdf, video)",
    )


# --- images -------------------------------------------------------------------------------------


def load_image_rgb(source: Path) -> np.ndarray:
    """Decode an image file upright (EXIF orientation applied) as RGB; first frame of animations."""
    with Image.open(source) as image:
        upright = ImageOps.exif_transpose(image)
        return pil_to_rgb(upright)


def image_frames(
    upload: UploadRecord, source: Path, blobs: BlobStore, options: FrameOptions = FrameOptions()
) -> Iterator[FrameRecord]:
    """The single frame of an image upload, stored as PNG."""
    try:
        rgb = load_image_rgb(source)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise FrameExtractionError(
            upload.upload_id,
            f"could not decode image {upload.original_name!r} ({type(error).__name__}: {error}); "
            "re-export it as PNG or JPEG and upload it again",
        ) from error
    yield _frame_record(upload, blobs, options, rgb, kind=FrameKind.IMAGE, index=0)


# --- PDFs ---------------------------------------------------------------------------------------


def render_pdf_page(document: pdfium.PdfDocument, page_index: int, dpi: int) -> np.ndarray:
    """Render one page (0-based) to RGB at ``dpi``; the page and its bitmap are closed before return."""
    page = document[page_index]
    try:
        bitmap = page.render(scale=dpi / POINTS_PER_INCH, rev_byteorder=True)
        try:
            return np.array(bitmap.to_numpy()[:, :, :3])  # a copy: the bitmap's buffer is freed on close
        finally:
            bitmap.close()
    finally:
        page.close()


def pdf_frames(
    upload: UploadRecord, source: Path, blobs: BlobStore, options: FrameOptions = FrameOptions()
) -> Iterator[FrameRecord]:
    """One PNG frame per page, rendered and released one page at a time.

    A page that fails to render does not stop the others; after the last page a
    :class:`FrameExtractionError` names the pages that failed.
    """
    try:
        document = pdfium.PdfDocument(source)
    except pdfium.PdfiumError as error:
        raise FrameExtractionError(
            upload.upload_id,
            f"could not open PDF {upload.original_name!r} ({error}); if it is password-protected or "
            "damaged, save an unprotected copy and upload it again",
        ) from error
    failed_pages: list[str] = []
    try:
        for page_index in range(len(document)):
            try:
                rgb = render_pdf_page(document, page_index, options.pdf_dpi)
            except pdfium.PdfiumError as error:
                failed_pages.append(f"page {page_index + 1}: {error}")
                continue
            yield _frame_record(upload, blobs, options, rgb, kind=FrameKind.PAGE, index=page_index, page=page_index + 1)
            del rgb
    finally:
        document.close()
    if failed_pages:
        raise FrameExtractionError(
            upload.upload_id,
            f"{len(failed_pages)} page(s) of {upload.original_name!r} could not be rendered "
            f"({'; '.join(failed_pages)}); the other pages were extracted",
        )


# --- videos -------------------------------------------------------------------------------------


class _Boundaries:
    """Which presentation timestamps open a new sample, in exact integer arithmetic.

    ``t >= k / rate``  <=>  ``(pts - first) * tb.num * rate.num >= k * tb.den * rate.den``.
    """

    def __init__(self, time_base: Fraction, rate: Fraction) -> None:
        self.time_base = time_base
        self.step_num = time_base.numerator * rate.numerator
        self.step_den = time_base.denominator * rate.denominator
        self.first_pts: int | None = None
        self.latest_pts: int | None = None
        self.next_boundary = 0
        self.taken = 0

    def certainly_before_next(self, pts: int | None) -> bool:
        """True when a frame at ``pts`` cannot be sampled, now or later (boundaries only grow)."""
        if self.first_pts is None or pts is None:
            return False
        return (pts - self.first_pts) * self.step_num < self.next_boundary * self.step_den

    def take(self, pts: int) -> float | None:
        """Seconds since the first frame when ``pts`` opens a new sample, else None."""
        if self.first_pts is None:
            self.first_pts = pts
        if self.latest_pts is None or pts > self.latest_pts:
            self.latest_pts = pts
        scaled = (pts - self.first_pts) * self.step_num
        if scaled < self.next_boundary * self.step_den:
            return None
        self.next_boundary = scaled // self.step_den + 1
        self.taken += 1
        return self.seconds(pts)

    def seconds(self, pts: int) -> float:
        return float(Fraction(pts - (self.first_pts or 0)) * self.time_base)


# A Generator, not an Iterator: callers close() it to release the container early.
def sample_video_times(path: Path, fps: float) -> Generator[tuple[int, float, av.VideoFrame], None, None]:
    """Stream ``(index, t_seconds, frame)`` samples of the first video stream of ``path``.

    Sample ``k`` is the first decoded frame whose presentation time is ``>= k / fps`` seconds after
    the first frame; ``t`` is exact (``(pts - first_pts) * time_base``, from the packet timestamps),
    never ``index / fps``. A gap longer than one interval (variable frame rate) yields one sample
    and moves on to the next boundary after it, so ``t`` strictly increases and there are no
    duplicates. Decoders output frames in presentation order even with B-frames; a frame whose pts
    goes backwards (a broken stream) can never pass the next boundary, so it is never sampled.

    Only one decoded frame is held at a time (plus the decoder's own reference frames). Packets
    whose pts lies before the next boundary are decoded with ``skip_frame=NONREF``: a frame that
    no other frame references and that cannot be sampled is not decoded at all (a third to a half
    of an x264 stream with B-frames), which changes no sampled frame.

    Raises :class:`VideoDecodeError` after the last good sample when decoding fails part-way, or
    when an indexed container (MP4/MOV) declares more duration than its packets hold (a truncated
    file). ``av.error.FFmpegError`` escapes when the file cannot be opened at all.
    """
    rate = Fraction(fps).limit_denominator(1_000_000)
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise VideoDecodeError("the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threads: the decoder is the bottleneck
        codec = stream.codec_context
        boundaries = _Boundaries(stream.time_base or Fraction(1, 90_000), rate)
        packets = container.demux(stream)  # ends with an empty packet that flushes the decoder
        packets_end: int | None = None  # how far the file's packets reach, in pts
        skipping = False
        try:
            for packet in packets:
                packets_end = _reach(packet, packets_end)
                if _should_skip_nonref(codec, boundaries, packet) != skipping:
                    skipping = not skipping
                    codec.skip_frame = "NONREF" if skipping else "DEFAULT"
                for frame in codec.decode(packet):
                    t = boundaries.take(_presentation_pts(frame))
                    if t is not None:
                        yield boundaries.taken - 1, t, frame
        except av.error.FFmpegError as error:
            where = "" if boundaries.latest_pts is None else f" after {boundaries.seconds(boundaries.latest_pts):.3f} s"
            # Demux (no decoding) the rest: tells a cut-off file from damage inside a whole one.
            truncation = _truncation(container, stream, _reach_of_rest(packets, packets_end))
            message = f"decoding failed{where}: {error}" + (f"; {truncation}" if truncation else "")
            raise VideoDecodeError(message) from error
        if boundaries.first_pts is None:
            raise VideoDecodeError("the file's video stream holds no decodable frame")
        truncation = _truncation(container, stream, packets_end)
        if truncation:
            raise VideoDecodeError(truncation)


def _should_skip_nonref(codec: av.VideoCodecContext, boundaries: _Boundaries, packet: av.Packet) -> bool:
    return codec.name in NONREF_SKIPPING_CODECS and boundaries.certainly_before_next(packet.pts)


def _reach(packet: av.Packet, reach: int | None) -> int | None:
    if packet.pts is None:
        return reach
    end = packet.pts + (packet.duration or 0)
    return end if reach is None else max(reach, end)


def _reach_of_rest(packets: Iterator[av.Packet], reach: int | None) -> int | None:
    try:
        for packet in packets:
            reach = _reach(packet, reach)
    except av.error.FFmpegError:
        pass  # the demuxer itself broke: the reach so far is all there is
    return reach


def _presentation_pts(frame: av.VideoFrame) -> int:
    pts = frame.pts if frame.pts is not None else frame.dts
    if pts is None:
        raise VideoDecodeError(
            "the video has frames without timestamps; remux it (ffmpeg -i in -c copy out.mp4) and upload it again"
        )
    return pts


def _truncation(container: av.container.InputContainer, stream: av.VideoStream, packets_end: int | None) -> str:
    """Why an indexed container (MP4/MOV) looks cut off, or "" when its packets reach its declared end."""
    if not INDEXED_CONTAINERS.intersection(container.format.name.split(",")):
        return ""
    if stream.duration is None or stream.start_time is None or stream.time_base is None:
        return ""
    declared = float(stream.duration * stream.time_base)
    present = 0.0 if packets_end is None else float((packets_end - stream.start_time) * stream.time_base)
    if declared - present <= TRUNCATION_SLACK_S:
        return ""
    return (
        f"the video ends after {present:.3f} s but its container declares {declared:.3f} s: "
        "the file is truncated; upload the complete file"
    )


def video_duration(path: Path) -> float | None:
    """Seconds the container declares for its video stream (None when it declares nothing)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        return container.duration / av.time_base if container.duration else None


def video_frames(
    upload: UploadRecord, source: Path, blobs: BlobStore, options: FrameOptions = FrameOptions()
) -> Iterator[FrameRecord]:
    """Frames sampled at ``options.video_fps``, stored as JPEG (or PNG), streamed."""
    try:
        duration = video_duration(source)
        with closing(sample_video_times(source, options.video_fps)) as samples:
            for index, t, frame in samples:
                rgb = _upright(frame.to_ndarray(format="rgb24"), frame.rotation)
                del frame
                yield _frame_record(
                    upload,
                    blobs,
                    options,
                    rgb,
                    kind=FrameKind.VIDEO_FRAME,
                    index=index,
                    t=t,
                    duration=duration,
                    picture_format=options.video_frame_format,
                )
    except VideoDecodeError as error:
        raise FrameExtractionError(upload.upload_id, f"video {upload.original_name!r}: {error}") from error
    except av.error.FFmpegError as error:  # av.open: not a readable container at all
        raise FrameExtractionError(
            upload.upload_id,
            f"video {upload.original_name!r} could not be opened ({error.strerror}); it may be cut off "
            "(an MP4 keeps its index at the end) or not a video: upload the complete file again",
        ) from error
