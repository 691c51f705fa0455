"""The sample H.264 video: coloured scenes with hard cuts, a burnt-in timestamp and a progress bar,
encoded frame by frame with PyAV so every frame's time and every cut is known exactly.
"""

from __future__ import annotations

import random
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

from qwen_dataset.samples.drawing import Color, load_font
from qwen_dataset.samples.truth import VideoTruth
from qwen_dataset.store.paths import atomic_writer

SCENE_COLOURS: tuple[Color, ...] = (
    (200, 40, 40),
    (30, 140, 60),
    (40, 70, 190),
    (220, 170, 30),
    (140, 50, 160),
    (20, 150, 160),
    (230, 110, 30),
    (230, 80, 140),
)


def scene_cut_frames(frame_count: int, scenes: int) -> list[int]:
    """First frame of every scene after the first, splitting the video into equal parts."""
    return sorted({round(frame_count * k / scenes) for k in range(1, scenes)} - {0, frame_count})


MIN_SCENE_CHANGE = 150  # summed |dRGB| between consecutive scenes: a cut no detector can miss


def _colour_distance(first: Color, second: Color) -> int:
    return sum(abs(a - b) for a, b in zip(first, second))


def _scene_palette(rng: random.Random, scenes: int) -> list[Color]:
    """Scene colours, each far from the one before it."""
    palette: list[Color] = []
    for _ in range(scenes):
        choices = [c for c in SCENE_COLOURS if not palette or _colour_distance(c, palette[-1]) >= MIN_SCENE_CHANGE]
        palette.append(rng.choice(choices))
    return palette


def _scene_background(colour: Color, width: int, height: int, rng: random.Random) -> np.ndarray:
    """A vertical shade of the scene colour with a few darker blocks (RGB), drawn once per scene."""
    shade = np.linspace(1.0, 0.7, height, dtype=np.float32)[:, None, None]
    background = np.broadcast_to(np.array(colour, dtype=np.float32) * shade, (height, width, 3)).copy()
    for _ in range(4):
        w, h = rng.randrange(width // 10, width // 3), rng.randrange(height // 10, height // 3)
        x, y = rng.randrange(0, width - w), rng.randrange(0, height - h)
        background[y : y + h, x : x + w] *= 0.6
    return background.astype(np.uint8)


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """RGB ``(h, w, 3)`` -> planar yuv420p bytes laid out as PyAV wants them, ``(h * 3 // 2, w)``.

    BT.601 limited range in integer arithmetic, chroma averaged over each 2x2 block. Done in
    numpy rather than swscale because swscale's SIMD paths may round differently from one CPU to
    the next, and the video must be byte-identical everywhere.
    """
    height, width = rgb.shape[:2]
    if width % 2 or height % 2:
        raise ValueError(f"yuv420p needs an even width and height, got {width}x{height}")
    pixels = rgb.astype(np.int32)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    luma = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
    blocks = pixels[0::2, 0::2] + pixels[0::2, 1::2] + pixels[1::2, 0::2] + pixels[1::2, 1::2]
    rb, gb, bb = blocks[..., 0], blocks[..., 1], blocks[..., 2]  # sums of four pixels
    u = ((-38 * rb - 74 * gb + 112 * bb + 512) >> 10) + 128
    v = ((112 * rb - 94 * gb - 18 * bb + 512) >> 10) + 128
    planes = (luma.reshape(-1), u.reshape(-1), v.reshape(-1))
    return np.concatenate(planes).astype(np.uint8).reshape(height * 3 // 2, width)


# Luma of a grey level, the same integer BT.601 formula as rgb_to_yuv420p uses for R = G = B.
GREY_TO_LUMA = (((220 * np.arange(256, dtype=np.int32) + 128) >> 8) + 16).astype(np.uint8)
NEUTRAL_CHROMA = 128


class Yuv420Frame:
    """A reusable yuv420p picture: a background filled once per scene, grey patches per frame.

    Composing in the encoder's own pixel format means the per-frame overlays cost a table lookup
    instead of a colour conversion of the whole picture (which costs about as much as encoding).
    Overlays are grey so their chroma is neutral and needs no conversion at all.
    """

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.buffer = np.zeros((height * 3 // 2, width), dtype=np.uint8)
        # The chroma planes follow the luma plane byte for byte; they need not start on a row.
        flat = self.buffer.reshape(-1)
        luma, chroma = width * height, (width // 2) * (height // 2)
        self.y = flat[:luma].reshape(height, width)
        self.u = flat[luma : luma + chroma].reshape(height // 2, width // 2)
        self.v = flat[luma + chroma : luma + 2 * chroma].reshape(height // 2, width // 2)

    def fill(self, rgb: np.ndarray) -> None:
        self.buffer[:] = rgb_to_yuv420p(rgb)

    def paste_grey(self, grey: np.ndarray, x: int, y: int) -> None:
        """Paste a grey-level patch with its top-left at even ``(x, y)``; its size must be even."""
        height, width = grey.shape
        if x % 2 or y % 2 or width % 2 or height % 2:
            raise ValueError("yuv420p patches need even positions and sizes")
        self.y[y : y + height, x : x + width] = GREY_TO_LUMA[grey]
        chroma = (slice(y // 2, (y + height) // 2), slice(x // 2, (x + width) // 2))
        self.u[chroma] = NEUTRAL_CHROMA
        self.v[chroma] = NEUTRAL_CHROMA

    def to_video_frame(self) -> av.VideoFrame:
        return av.VideoFrame.from_ndarray(self.buffer, format="yuv420p")


def _even(value: int) -> int:
    return value - value % 2


class _TimestampOverlay:
    """Draws ``t=SS.mmm`` and the frame number onto a fixed dark panel; only that panel changes."""

    def __init__(self, width: int, height: int) -> None:
        self.size = max(12, height // 7)
        self.font = load_font(self.size)
        self.small = load_font(max(10, self.size // 2))
        self.x, self.y = _even(width // 20), _even(height // 12)
        self.width = _even(min(width - self.x, int(self.size * 6.0)))
        self.height = _even(min(height - self.y, int(self.size * 2.2)))

    def draw(self, frame: Yuv420Frame, index: int, fps: int) -> None:
        panel = Image.new("L", (self.width, self.height), 16)
        draw = ImageDraw.Draw(panel)
        draw.text((self.size // 4, 0), format_timestamp(index / fps), font=self.font, fill=255)
        draw.text((self.size // 4, int(self.size * 1.35)), f"frame {index:06d}", font=self.small, fill=210)
        frame.paste_grey(np.asarray(panel), self.x, self.y)


def format_timestamp(seconds: float) -> str:
    """What the video shows on a frame presented at ``seconds``: ``t=01.240``."""
    return f"t={seconds:06.3f}"


def _progress_bar(frame: Yuv420Frame, fraction: float) -> None:
    """A bar along the bottom edge that fills up over the whole video: steady motion in every scene."""
    bar_height = _even(max(4, frame.height // 40))
    strip = np.full((bar_height, frame.width), 30, dtype=np.uint8)
    strip[:, : int(frame.width * fraction)] = 250
    frame.paste_grey(strip, 0, frame.height - bar_height)


def make_h264_video(
    path: Path,
    seconds: float,
    fps: int,
    width: int,
    height: int,
    seed: int = 0,
    *,
    scenes: int = 3,
    preset: str = "veryfast",
    crf: int = 23,
    threads: int = 2,
) -> VideoTruth:
    """Encode an H.264 MP4 whose every frame shows its own timestamp, with known scene cuts.

    Frame ``i`` has ``pts = i`` in a ``1/fps`` time base, so it is presented at exactly
    ``i / fps`` seconds; the background colour changes at ``scenes - 1`` equally spaced cuts.
    Frames are composed one at a time in a reused yuv420p buffer (only the timestamp panel and
    the progress bar are redrawn) and streamed into the encoder, so a long 1080p video needs no
    more memory than a short one. ``threads`` is fixed rather than automatic because x264's
    output depends on its thread count: a fixed count keeps the bytes identical across machines.
    The file appears atomically when encoding finishes.
    """
    if width % 2 or height % 2:
        raise ValueError(f"yuv420p needs an even width and height, got {width}x{height}")
    if fps <= 0 or seconds <= 0:
        raise ValueError(f"fps and seconds must be positive, got fps={fps}, seconds={seconds}")
    path = Path(path)
    rng = random.Random(seed)
    frame_count = max(1, round(seconds * fps))
    cuts = scene_cut_frames(frame_count, scenes)
    palette = _scene_palette(rng, len(cuts) + 1)
    overlay = _TimestampOverlay(width, height)
    time_base = Fraction(1, fps)

    with atomic_writer(path) as handle, av.open(handle, mode="w", format="mp4") as container:
        stream = container.add_stream(
            "libx264",
            rate=fps,
            options={
                "preset": preset,
                "crf": str(crf),
                "threads": str(threads),
                "g": str(2 * fps),
            },
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        picture = Yuv420Frame(width, height)
        scene = -1
        for index in range(frame_count):
            current = sum(1 for cut in cuts if cut <= index)
            if current != scene:
                scene = current
                picture.fill(_scene_background(palette[scene], width, height, rng))
            overlay.draw(picture, index, fps)
            _progress_bar(picture, index / max(1, frame_count - 1))
            frame = picture.to_video_frame()
            frame.pts, frame.time_base = index, time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)

    return VideoTruth(
        file_name=path.name,
        width=width,
        height=height,
        fps=fps,
        frame_count=frame_count,
        duration=frame_count / fps,
        scene_cuts=[cut / fps for cut in cuts],
        scene_cut_frames=cuts,
    )
