"""Tests of the frames stage: images, PDF pages, sampled video frames, low-light enhancement.

Every fixture is generated here in ``tmp_path`` (Pillow, PyAV/libx264, Pillow's PDF writer).
Video fixtures carry their source frame number as ten black/white blocks along the top edge, so a
test can tell which frame the sampler picked without trusting the sampler's own timestamps.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import subprocess
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from qwen_dataset.ingest.frames import (
    FrameExtractionError,
    FrameOptions,
    enhance_low_light,
    extract_frames,
    image_frames,
    mean_luma,
    pdf_frames,
    sample_video_times,
    video_frames,
)
from qwen_dataset.records import FrameKind, MediaType, UploadRecord, UploadStatus, frame_id_for
from qwen_dataset.store.blobs import BlobStore

ID_BITS = 10
WIDTH, HEIGHT = 320, 240
BLOCK = WIDTH // ID_BITS


# --- fixtures -----------------------------------------------------------------------------------


def textured_canvas(width: int, height: int) -> np.ndarray:
    """A smooth random texture twice the frame size; frames are moving windows onto it."""
    coarse = np.random.default_rng(7).integers(30, 220, (height // 8, width // 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((2 * width, 2 * height), Image.BILINEAR))


def id_coded_picture(number: int, canvas: np.ndarray, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """Frame ``number``: a panning window (so x264 predicts and uses B-frames) with the number coded on top."""
    x, y = (3 * number) % width, (2 * number) % height
    rgb = canvas[y : y + height, x : x + width].copy()
    for bit in range(ID_BITS):
        rgb[:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 255 if number >> bit & 1 else 0
    return rgb


def read_id(rgb: np.ndarray) -> int:
    blocks = [rgb[4 : BLOCK - 4, bit * BLOCK + 4 : (bit + 1) * BLOCK - 4].mean() for bit in range(ID_BITS)]
    return sum(1 << bit for bit, level in enumerate(blocks) if level > 128)


def write_h264(
    path: Path,
    pts_list: list[int],
    time_base: Fraction,
    *,
    rate: Fraction | int = 25,
    preset: str = "fast",
    faststart: bool = False,
    size: tuple[int, int] = (WIDTH, HEIGHT),
) -> Path:
    """Encode one id-coded frame per entry of ``pts_list`` (in ``time_base`` units) with B-frames."""
    canvas = textured_canvas(*size)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.time_base = time_base
        # b-adapt=0 makes x264 always use its B-frames: decode order != presentation order.
        stream.options = {"preset": preset, "bf": "3", "x264-params": "b-adapt=0:keyint=50"}
        for number, pts in enumerate(pts_list):
            frame = av.VideoFrame.from_ndarray(id_coded_picture(number, canvas, *size), format="rgb24")
            frame.pts, frame.time_base = pts, time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_cfr(path: Path, seconds: float, rate: Fraction | int, start_frames: int = 0, **kwargs) -> Path:
    rate = Fraction(rate)
    count = int(seconds * rate)
    return write_h264(path, [start_frames + i for i in range(count)], 1 / rate, rate=rate, **kwargs)


def upload_for(blobs: BlobStore, source: Path, media_type: MediaType) -> UploadRecord:
    sha256, uri = blobs.put_file(source)
    return UploadRecord(
        upload_id=sha256,
        batch="b1",
        original_name=source.name,
        media_type=media_type.value,
        bytes=source.stat().st_size,
        status=UploadStatus.OK.value,
        reason="",
        blob_uri=uri,
    )


def stored_rgb(blobs: BlobStore, uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(blobs.read_bytes(uri))).convert("RGB"))


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "store")


# --- pixels -------------------------------------------------------------------------------------


def test_mean_luma_uses_bt601_weights() -> None:
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[:, :3] = (255, 0, 0)
    rgb[:, 3:] = (0, 0, 255)
    assert mean_luma(rgb) == pytest.approx((0.299 * 255 + 0.114 * 255) / 2)


def test_clahe_raises_contrast_of_a_dark_picture() -> None:
    rng = np.random.default_rng(0)
    dark = rng.integers(5, 35, (120, 160, 3), dtype=np.uint8)
    enhanced = enhance_low_light(dark, clip_limit=2.0, tile_grid=8)
    assert enhanced.shape == dark.shape and enhanced.dtype == np.uint8

    def luma(rgb: np.ndarray) -> np.ndarray:
        return rgb.astype(float) @ np.array([0.299, 0.587, 0.114])

    assert luma(enhanced).std() > 1.5 * luma(dark).std()
    assert mean_luma(enhanced) > mean_luma(dark)


def test_frame_options_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="video_fps"):
        FrameOptions(video_fps=0)
    with pytest.raises(ValueError, match="video_frame_format"):
        FrameOptions(video_frame_format="webp")


# --- images -------------------------------------------------------------------------------------


def test_exif_orientation_is_applied(tmp_path: Path, blobs: BlobStore) -> None:
    picture = np.zeros((20, 40, 3), np.uint8)
    picture[:, :20] = (255, 0, 0)  # left half red, right half black
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    source = tmp_path / "phone.jpg"
    Image.fromarray(picture).save(source, exif=exif, quality=98)
    upload = upload_for(blobs, source, MediaType.IMAGE)

    [frame] = list(image_frames(upload, source, blobs))

    assert (frame.width, frame.height) == (20, 40)
    stored = stored_rgb(blobs, frame.blob_uri)
    assert stored.shape == (40, 20, 3)
    assert stored[5, 10, 0] > 200 and stored[5, 10, 1] < 60  # the red half is now on top
    assert stored[35, 10].max() < 60
    assert frame.kind == FrameKind.IMAGE and frame.index == 0 and frame.page is None and frame.t is None
    assert frame.frame_id == frame_id_for(upload.upload_id, 0) and frame.batch == "b1"
    assert blobs.read_bytes(frame.blob_uri).startswith(b"\x89PNG")


def test_alpha_is_composited_on_white(tmp_path: Path, blobs: BlobStore) -> None:
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[:, :5] = (255, 0, 0, 128)  # half-transparent red; right half fully transparent
    source = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(source)

    [frame] = list(image_frames(upload_for(blobs, source, MediaType.IMAGE), source, blobs))

    stored = stored_rgb(blobs, frame.blob_uri)
    assert tuple(stored[0, 9]) == (255, 255, 255)
    assert stored[0, 0, 0] == 255 and 120 <= stored[0, 0, 1] <= 135


def test_palette_transparency_and_cmyk_and_16_bit(tmp_path: Path, blobs: BlobStore) -> None:
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.info["transparency"] = 0
    palette_path = tmp_path / "palette.png"
    palette.save(palette_path, transparency=0)

    cmyk_path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(cmyk_path, quality=100)  # pure red in CMYK

    grey16 = np.full((8, 8), 65535, np.uint16)
    grey16[:, :4] = 32896  # 128 * 257
    grey16_path = tmp_path / "grey16.png"
    Image.fromarray(grey16).save(grey16_path)
    assert Image.open(grey16_path).mode.startswith("I")

    def only_frame(path: Path) -> np.ndarray:
        [frame] = list(image_frames(upload_for(blobs, path, MediaType.IMAGE), path, blobs))
        return stored_rgb(blobs, frame.blob_uri)

    palette_rgb = only_frame(palette_path)
    assert tuple(palette_rgb[0, 0]) == (255, 255, 255) and tuple(palette_rgb[4, 4]) == (0, 0, 255)
    cmyk_rgb = only_frame(cmyk_path)
    assert cmyk_rgb[4, 4, 0] > 230 and cmyk_rgb[4, 4, 1:].max() < 25
    grey_rgb = only_frame(grey16_path)
    assert tuple(grey_rgb[0, 0]) == (128, 128, 128) and tuple(grey_rgb[0, 7]) == (255, 255, 255)


def test_broken_image_raises_frame_extraction_error(tmp_path: Path, blobs: BlobStore) -> None:
    source = tmp_path / "broken.png"
    source.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    upload = upload_for(blobs, source, MediaType.IMAGE)
    with pytest.raises(FrameExtractionError, match="could not decode image") as caught:
        list(image_frames(upload, source, blobs))
    assert caught.value.upload_id == upload.upload_id


def test_low_light_frames_get_an_enhanced_copy(tmp_path: Path, blobs: BlobStore) -> None:
    rng = np.random.default_rng(3)
    dark_path, bright_path = tmp_path / "dark.png", tmp_path / "bright.png"
    Image.fromarray(rng.integers(5, 40, (64, 64, 3), dtype=np.uint8)).save(dark_path)
    Image.fromarray(rng.integers(120, 250, (64, 64, 3), dtype=np.uint8)).save(bright_path)

    [dark] = list(image_frames(upload_for(blobs, dark_path, MediaType.IMAGE), dark_path, blobs))
    [bright] = list(image_frames(upload_for(blobs, bright_path, MediaType.IMAGE), bright_path, blobs))

    assert dark.low_light and dark.mean_luma < 60 and dark.enhanced_uri
    assert dark.enhanced_uri != dark.blob_uri
    original, enhanced = stored_rgb(blobs, dark.blob_uri), stored_rgb(blobs, dark.enhanced_uri)
    assert mean_luma(enhanced) > mean_luma(original)
    assert not bright.low_light and bright.enhanced_uri == "" and bright.mean_luma > 60
    strict = FrameOptions(low_light_threshold=10)
    [dark_again] = list(image_frames(upload_for(blobs, dark_path, MediaType.IMAGE), dark_path, blobs, strict))
    assert not dark_again.low_light and dark_again.enhanced_uri == ""


# --- PDFs ---------------------------------------------------------------------------------------


def test_pdf_pages_rendered_at_dpi(tmp_path: Path, blobs: BlobStore) -> None:
    colours = [(255, 0, 0), (0, 160, 0), (0, 0, 255)]
    pages = [Image.new("RGB", (200, 100), colour) for colour in colours]
    source = tmp_path / "doc.pdf"
    pages[0].save(source, "PDF", resolution=100.0, save_all=True, append_images=pages[1:])  # 144x72 pt
    upload = upload_for(blobs, source, MediaType.PDF)

    frames = list(pdf_frames(upload, source, blobs, FrameOptions(pdf_dpi=150)))

    assert [frame.page for frame in frames] == [1, 2, 3]
    assert [frame.index for frame in frames] == [0, 1, 2]
    assert {frame.kind for frame in frames} == {FrameKind.PAGE}
    for frame, colour in zip(frames, colours):
        assert (frame.width, frame.height) == (300, 150)  # 144 pt * 150/72, 72 pt * 150/72
        stored = stored_rgb(blobs, frame.blob_uri)
        assert stored.shape == (150, 300, 3)
        assert np.abs(stored[75, 150].astype(int) - colour).max() < 20
        assert frame.t is None

    [low_dpi] = list(pdf_frames(upload, source, blobs, FrameOptions(pdf_dpi=72)))[:1]
    assert (low_dpi.width, low_dpi.height) == (144, 72)


def test_unreadable_pdf_raises_frame_extraction_error(tmp_path: Path, blobs: BlobStore) -> None:
    source = tmp_path / "bad.pdf"
    source.write_bytes(b"%PDF-1.7\nthis is not a pdf body")
    with pytest.raises(FrameExtractionError, match="could not open PDF"):
        list(pdf_frames(upload_for(blobs, source, MediaType.PDF), source, blobs))


# --- videos -------------------------------------------------------------------------------------


def expected_samples(times: list[Fraction], fps: Fraction) -> list[int]:
    """Indices (into presentation-ordered ``times``) of the first frame at or after each k/fps."""
    chosen, boundary = [], Fraction(0)
    for number, t in enumerate(times):
        if t >= boundary:
            chosen.append(number)
            boundary = (int(t * fps) + 1) / fps
    return chosen


@pytest.mark.parametrize(
    ("rate", "start_frames"),
    [(Fraction(25), 0), (Fraction(25), 40), (Fraction(30000, 1001), 0), (Fraction(30000, 1001), 17)],
    ids=["25fps", "25fps-start1.6s", "29.97fps", "29.97fps-start0.57s"],
)
def test_video_samples_are_the_first_frames_at_each_boundary(tmp_path: Path, rate: Fraction, start_frames: int) -> None:
    path = write_cfr(tmp_path / "clip.mp4", 4, rate, start_frames=start_frames)
    with av.open(str(path)) as container:  # B-frames: packets are not in presentation order
        packet_pts = [p.pts for p in container.demux(container.streams.video[0]) if p.pts is not None]
    assert packet_pts != sorted(packet_pts)

    samples = [
        (index, t, read_id(frame.to_ndarray(format="rgb24"))) for index, t, frame in sample_video_times(path, 1.0)
    ]

    frame_times = [Fraction(number) / rate for number in range(int(4 * rate))]
    assert [number for _, _, number in samples] == expected_samples(frame_times, Fraction(1))
    assert [index for index, _, _ in samples] == list(range(len(samples))) == [0, 1, 2, 3]
    assert samples[0][1] == 0.0
    for index, t, number in samples:
        assert t == pytest.approx(float(frame_times[number]), abs=1e-9)  # the true pts of that frame
        assert index <= t < index + 1 / rate  # within one frame interval of k/fps
    assert all(a[1] < b[1] for a, b in zip(samples, samples[1:]))


def test_video_sampling_at_other_rates(tmp_path: Path) -> None:
    path = write_cfr(tmp_path / "clip.mp4", 4, 25, preset="ultrafast")
    fast = [t for _, t, _ in sample_video_times(path, 2.5)]
    assert fast == pytest.approx([0.0, 0.4, 0.8, 1.2, 1.6, 2.0, 2.4, 2.8, 3.2, 3.6])
    slow = [t for _, t, _ in sample_video_times(path, 0.5)]
    assert slow == [0.0, 2.0]


def test_variable_frame_rate_video(tmp_path: Path) -> None:
    time_base = Fraction(1, 1000)
    pts_ms = [0, 40, 80, 990, 1010, 1500, 1540, 3700, 3740, 3780, 5000, 5040]
    path = write_h264(tmp_path / "vfr.mp4", pts_ms, time_base)

    samples = [(t, read_id(frame.to_ndarray(format="rgb24"))) for _, t, frame in sample_video_times(path, 1.0)]

    times = [Fraction(ms, 1000) for ms in pts_ms]
    chosen = expected_samples(times, Fraction(1))
    assert chosen == [0, 4, 7, 10]  # 3700 ms stands in for both 2 s and 3 s: one sample, no duplicate
    assert [number for _, number in samples] == chosen
    assert [t for t, _ in samples] == pytest.approx([float(times[n]) for n in chosen], abs=1e-9)


@pytest.mark.parametrize("fps", [1.0, 2.5, 7.0])
def test_skipping_nonreference_frames_changes_no_sample(tmp_path: Path, fps: float) -> None:
    path = write_cfr(tmp_path / "clip.mp4", 4, 25)
    with av.open(str(path)) as container:  # reference: decode every frame, then pick
        stream = container.streams.video[0]
        decoded = [(Fraction(f.pts) * stream.time_base, f.to_ndarray(format="rgb24")) for f in container.decode(stream)]
    times = [t - decoded[0][0] for t, _ in decoded]
    reference = [decoded[number] for number in expected_samples(times, Fraction(fps))]

    samples = [(t, frame.to_ndarray(format="rgb24")) for _, t, frame in sample_video_times(path, fps)]

    assert len(samples) == len(reference) == int(4 * fps) + (4 * fps % 1 > 0)
    for (t, pixels), (ref_time, ref_pixels) in zip(samples, reference):
        assert t == pytest.approx(float(ref_time - decoded[0][0]), abs=1e-9)
        assert np.array_equal(pixels, ref_pixels)


def test_video_frames_records_and_blobs(tmp_path: Path, blobs: BlobStore) -> None:
    source = write_cfr(tmp_path / "clip.mp4", 3, 25, preset="ultrafast")
    upload = upload_for(blobs, source, MediaType.VIDEO)

    jpeg_frames = list(video_frames(upload, source, blobs))
    png_frames = list(video_frames(upload, source, blobs, FrameOptions(video_frame_format="png", video_fps=2)))

    assert [frame.t for frame in jpeg_frames] == [0.0, 1.0, 2.0]
    assert [frame.index for frame in jpeg_frames] == [0, 1, 2]
    assert [frame.frame_id for frame in jpeg_frames] == [frame_id_for(upload.upload_id, i) for i in range(3)]
    assert {(f.kind, f.page, f.width, f.height) for f in jpeg_frames} == {(FrameKind.VIDEO_FRAME, None, WIDTH, HEIGHT)}
    assert blobs.read_bytes(jpeg_frames[1].blob_uri).startswith(b"\xff\xd8")
    assert read_id(stored_rgb(blobs, jpeg_frames[1].blob_uri)) == 25
    assert len(png_frames) == 6 and blobs.read_bytes(png_frames[0].blob_uri).startswith(b"\x89PNG")
    assert read_id(stored_rgb(blobs, png_frames[3].blob_uri)) == 38  # 1.5 s * 25 fps, lossless


def test_truncated_video_yields_frames_before_the_cut_then_raises(tmp_path: Path, blobs: BlobStore) -> None:
    whole = write_cfr(tmp_path / "whole.mp4", 4, 25, faststart=True)
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    upload = upload_for(blobs, cut, MediaType.VIDEO)

    produced = []
    with pytest.raises(FrameExtractionError, match="truncated") as caught:
        for frame in extract_frames(upload, blobs):
            produced.append(frame)

    assert caught.value.upload_id == upload.upload_id
    assert [frame.t for frame in produced] == [0.0, 1.0]  # the cut lands between 1 s and 3 s
    assert all(blobs.local_path(frame.blob_uri).is_file() for frame in produced)


def test_decode_error_mid_video_keeps_earlier_frames(tmp_path: Path, blobs: BlobStore) -> None:
    whole = write_cfr(tmp_path / "whole.mp4", 4, 25, faststart=True)
    data = bytearray(whole.read_bytes())
    rng = np.random.default_rng(1)
    middle = len(data) // 2
    data[middle : middle + 4000] = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))

    produced = []
    with pytest.raises(FrameExtractionError, match="decoding failed after") as caught:
        for frame in extract_frames(upload_for(blobs, damaged, MediaType.VIDEO), blobs):
            produced.append(frame)
    assert produced and produced[0].t == 0.0
    assert "truncated" not in str(caught.value)  # the file is whole: its packets reach the end


def test_unopenable_video_raises_frame_extraction_error(tmp_path: Path, blobs: BlobStore) -> None:
    whole = write_cfr(tmp_path / "whole.mp4", 2, 25, preset="ultrafast")  # index at the end
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[:5000])
    with pytest.raises(FrameExtractionError, match="cut.mp4"):
        list(extract_frames(upload_for(blobs, cut, MediaType.VIDEO), blobs))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI to write a rotation tag")
def test_video_display_rotation_matches_ffmpeg(tmp_path: Path, blobs: BlobStore) -> None:
    plain = write_cfr(tmp_path / "plain.mp4", 1, 25, preset="ultrafast")
    rotated = tmp_path / "rotated.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(plain), "-c", "copy", "-metadata:s:v", "rotate=90", str(rotated)],
        check=True,
    )
    reference = tmp_path / "reference.png"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(rotated), "-frames:v", "1", str(reference)], check=True)

    upload = upload_for(blobs, rotated, MediaType.VIDEO)
    [frame] = list(video_frames(upload, rotated, blobs, FrameOptions(video_frame_format="png")))

    assert (frame.width, frame.height) == (HEIGHT, WIDTH)
    ours = stored_rgb(blobs, frame.blob_uri).astype(int)
    assert np.abs(ours - np.asarray(Image.open(reference).convert("RGB"), dtype=int)).mean() < 3


def rss_peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_rss_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def test_sampling_a_long_video_keeps_memory_flat(tmp_path: Path, blobs: BlobStore) -> None:
    source = write_cfr(tmp_path / "minute.mp4", 60, 25, preset="ultrafast")  # 1500 frames
    upload = upload_for(blobs, source, MediaType.VIDEO)
    can_reset = reset_rss_peak()
    rss_before = rss_peak_kib()
    tracemalloc.start()
    try:
        count = 0
        for _frame in video_frames(upload, source, blobs):
            count += 1
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth_mib = (rss_peak_kib() - rss_before) / 1024

    assert count == 60
    one_frame = WIDTH * HEIGHT * 3
    assert traced_peak < 12 * one_frame, f"python-side peak {traced_peak} bytes"  # numpy arrays are traced
    if can_reset:  # all 1500 decoded frames held would be ~170 MiB
        assert rss_growth_mib < 60, f"RSS grew by {rss_growth_mib:.1f} MiB"


# --- dispatch -----------------------------------------------------------------------------------


def test_extract_frames_dispatches_by_media_type(tmp_path: Path, blobs: BlobStore) -> None:
    image_path = tmp_path / "a.png"
    Image.new("RGB", (16, 8), (200, 200, 200)).save(image_path)
    pdf_path = tmp_path / "a.pdf"
    Image.new("RGB", (72, 72), (200, 200, 200)).save(pdf_path, "PDF", resolution=72.0)
    video_path = write_cfr(tmp_path / "a.mp4", 2, 25, preset="ultrafast")

    kinds = {
        media: [f.kind for f in extract_frames(upload_for(blobs, path, media), blobs)]
        for media, path in [(MediaType.IMAGE, image_path), (MediaType.PDF, pdf_path), (MediaType.VIDEO, video_path)]
    }

    assert kinds == {
        MediaType.IMAGE: [FrameKind.IMAGE],
        MediaType.PDF: [FrameKind.PAGE],
        MediaType.VIDEO: [FrameKind.VIDEO_FRAME, FrameKind.VIDEO_FRAME],
    }
    duplicate = dataclasses.replace(upload_for(blobs, image_path, MediaType.IMAGE), status=UploadStatus.DUPLICATE.value)
    with pytest.raises(ValueError, match="only ok uploads"):
        extract_frames(duplicate, blobs)
    missing = dataclasses.replace(upload_for(blobs, image_path, MediaType.IMAGE), blob_uri="blobs/sha256/00/00/none")
    with pytest.raises(FrameExtractionError, match="re-ingest"):
        extract_frames(missing, blobs)
