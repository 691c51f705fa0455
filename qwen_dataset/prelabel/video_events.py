"""Video event boundaries: snap the model's event times to shot cuts and audio change points.

A VLM sees a handful of sampled frames and guesses event times to within a sampling interval.
The video itself knows better: a hard cut shows as a peak in the difference between consecutive
frames, and many events start or stop with a sound (short-time audio energy jumps). Each event
boundary is moved to the nearest such anchor within a tolerance (default 0.5 s); the raw time is
kept beside the aligned one.

Two sources of anchors:

* :func:`cuts_from_sampled_frames` - frame-difference peaks over the sampled frames only (cheap,
  what the prelabel backend always has);
* :func:`scan_video` - one streaming PyAV pass over the whole file: every decoded frame at low
  resolution (cuts at frame precision) and the audio track's short-time energy (change points).
  Memory stays flat: one previous thumbnail and one float per frame / audio window.

The signal functions are pure (numpy in, floats out) so they are tested with synthetic signals.

>>> align_time(4.8, anchors=[2.0, 5.0], tolerance=0.5)
5.0
>>> align_time(4.0, anchors=[2.0, 5.0], tolerance=0.5)
4.0
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from qwen_dataset.prelabel.base import FrameInput

DEFAULT_TOLERANCE_S = 0.5
THUMB_WIDTH = 64

# Cut detection on mean absolute RGB difference (0..1): a cut must beat this floor and stand out
# from the clip's typical motion (median + k * MAD) so panning or noise does not count as cuts.
CUT_FLOOR = 0.08
CUT_MAD_K = 6.0
MIN_CUT_SEPARATION_S = 0.2

# Audio change points: a jump of the mean log energy between the windows before and after.
AUDIO_WINDOW_S = 0.05
AUDIO_CONTEXT_WINDOWS = 4
AUDIO_MIN_JUMP_DB = 12.0
AUDIO_RATE = 16000
_SILENCE_POWER = 1e-10


@dataclasses.dataclass(frozen=True)
class Boundaries:
    """Candidate event boundaries of one video, in seconds."""

    cuts: tuple[float, ...] = ()
    audio_changes: tuple[float, ...] = ()
    source: str = "none"  # "sampled_frames" | "video_scan" | "none"

    @property
    def anchors(self) -> list[float]:
        return sorted({*self.cuts, *self.audio_changes})


# --------------------------------------------------------------------------------------------
# Alignment


def align_time(t: float, anchors: Sequence[float], tolerance: float = DEFAULT_TOLERANCE_S) -> float:
    """The anchor nearest to ``t`` if it lies within ``tolerance``, else ``t`` itself."""
    ordered = sorted(anchors)
    if not ordered:
        return t
    position = bisect.bisect_left(ordered, t)
    neighbours = ordered[max(0, position - 1) : position + 1]
    nearest = min(neighbours, key=lambda anchor: (abs(anchor - t), anchor))
    return float(nearest) if abs(nearest - t) <= tolerance else t


def align_events(
    events: Iterable[dict[str, Any]], boundaries: Boundaries, tolerance: float = DEFAULT_TOLERANCE_S
) -> list[dict[str, Any]]:
    """Events ``{start, end, description}`` -> ``{start, end, start_raw, end_raw, description}``.

    Snapping to the nearest anchor is monotone in time, so an event never turns inside out
    (``start <= end`` holds after alignment whenever it held before); it may shrink to an instant.
    """
    anchors = boundaries.anchors
    aligned = []
    for event in events:
        start_raw, end_raw = float(event["start"]), float(event["end"])
        start, end = align_time(start_raw, anchors, tolerance), align_time(end_raw, anchors, tolerance)
        aligned.append(
            {
                "start": start,
                "end": end,
                "start_raw": start_raw,
                "end_raw": end_raw,
                "description": event["description"],
            }
        )
    return aligned


def frame_ids_for_event(start: float, end: float, times: Sequence[float], frame_ids: Sequence[str]) -> list[str]:
    """Sampled frames whose timestamp lies in ``[start, end]``; else the one nearest the middle."""
    inside = [frame_id for t, frame_id in zip(times, frame_ids) if start <= t <= end]
    if inside or not frame_ids:
        return inside
    middle = (start + end) / 2
    nearest = min(range(len(times)), key=lambda index: abs(times[index] - middle))
    return [frame_ids[nearest]]


def event_payload(
    events: Iterable[dict[str, Any]],
    boundaries: Boundaries,
    times: Sequence[float],
    frame_ids: Sequence[str],
    tolerance: float = DEFAULT_TOLERANCE_S,
) -> dict[str, Any]:
    """The canonical ``video_event`` payload of one video.

    ``{"events": [{start, end, description, frame_ids, start_raw, end_raw}], "alignment": {source,
    tolerance_s, cuts, audio_changes}}``; events sorted by start; times in seconds.
    """
    aligned = sorted(align_events(events, boundaries, tolerance), key=lambda event: (event["start"], event["end"]))
    for event in aligned:
        event["frame_ids"] = frame_ids_for_event(event["start"], event["end"], times, frame_ids)
    return {
        "events": aligned,
        "alignment": {
            "source": boundaries.source,
            "tolerance_s": tolerance,
            "cuts": [round(t, 3) for t in boundaries.cuts],
            "audio_changes": [round(t, 3) for t in boundaries.audio_changes],
        },
    }


def group_video_frames(frames: Iterable[FrameInput]) -> dict[str, list[FrameInput]]:
    """Sampled frames per video (``upload_id``), each list in time order; first-seen video order."""
    groups: dict[str, list[FrameInput]] = {}
    for frame in frames:
        groups.setdefault(frame.upload_id, []).append(frame)
    for members in groups.values():
        members.sort(key=lambda frame: (frame.t is None, frame.t or 0.0, frame.frame_id))
    return groups


def anchor_frames(frames: Iterable[FrameInput]) -> list[FrameInput]:
    """The first sampled frame of each video: the frame a ``video_event`` outcome is filed under.

    Pass these (not all frames) to :func:`qwen_dataset.prelabel.base.outcomes_to_records` for the
    ``video_event`` task, so each video gets exactly one record.
    """
    return [members[0] for members in group_video_frames(frames).values()]


# --------------------------------------------------------------------------------------------
# Signals


def frame_difference_scores(thumbs: Sequence[np.ndarray]) -> np.ndarray:
    """Mean absolute difference (0..1) of each thumbnail to the one before; the first scores 0."""
    scores = np.zeros(len(thumbs), dtype=float)
    for index in range(1, len(thumbs)):
        scores[index] = _thumb_difference(thumbs[index - 1], thumbs[index])
    return scores


def _thumb_difference(previous: np.ndarray, current: np.ndarray) -> float:
    if previous.shape != current.shape:
        return 1.0  # a resolution change mid-stream is a cut by any measure
    return float(np.abs(current.astype(np.int16) - previous.astype(np.int16)).mean() / 255.0)


def detect_peaks(
    times: Sequence[float],
    scores: Sequence[float] | np.ndarray,
    *,
    floor: float,
    mad_k: float,
    min_separation_s: float,
) -> list[float]:
    """Times of scores that beat ``max(floor, median + mad_k * MAD)`` and are the local maximum
    within ``min_separation_s`` (so one cut spread over two frames counts once)."""
    values = np.asarray(scores, dtype=float)
    stamps = np.asarray(times, dtype=float)
    if values.size == 0:
        return []
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median))) * 1.4826
    threshold = max(floor, median + mad_k * mad)
    peaks: list[float] = []
    for index in np.flatnonzero(values > threshold):
        near = np.abs(stamps - stamps[index]) <= min_separation_s
        if values[index] >= values[near].max() and not any(abs(stamps[index] - t) <= min_separation_s for t in peaks):
            peaks.append(float(stamps[index]))
    return peaks


def thumbnail(image: Image.Image, width: int = THUMB_WIDTH) -> np.ndarray:
    """A small RGB array of ``image`` (aspect kept) for frame differencing."""
    height = max(1, round(image.height * width / max(1, image.width)))
    return np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR))


def cuts_from_sampled_frames(paths: Sequence[Path], times: Sequence[float]) -> list[float]:
    """Shot cuts among the sampled frames: the time of the first frame after each cut."""
    thumbs = []
    for path in paths:
        with Image.open(path) as image:
            image.draft("RGB", (THUMB_WIDTH * 4, THUMB_WIDTH * 4))  # JPEG: decode at reduced size
            thumbs.append(thumbnail(image))
    return detect_peaks(
        times, frame_difference_scores(thumbs), floor=CUT_FLOOR, mad_k=CUT_MAD_K, min_separation_s=MIN_CUT_SEPARATION_S
    )


def short_time_energy_db(
    samples: np.ndarray, rate: int, window_s: float = AUDIO_WINDOW_S
) -> tuple[np.ndarray, np.ndarray]:
    """Mono ``samples`` -> (window start times, mean power in dB) over non-overlapping windows."""
    size = max(1, int(round(rate * window_s)))
    count = len(samples) // size
    if count == 0:
        return np.zeros(0), np.zeros(0)
    frames = np.asarray(samples[: count * size], dtype=np.float64).reshape(count, size)
    power = (frames**2).mean(axis=1)
    return np.arange(count) * size / rate, 10.0 * np.log10(power + _SILENCE_POWER)


def energy_change_points(
    times: Sequence[float],
    energy_db: Sequence[float],
    *,
    context: int = AUDIO_CONTEXT_WINDOWS,
    min_jump_db: float = AUDIO_MIN_JUMP_DB,
) -> list[float]:
    """Times where the mean energy of the ``context`` windows after differs from the ``context``
    windows before by at least ``min_jump_db`` (onsets and offsets of sound), one per jump."""
    values = np.asarray(energy_db, dtype=float)
    stamps = np.asarray(times, dtype=float)
    if values.size < 2 * context:
        return []
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    scores = np.zeros(values.size)
    for index in range(context, values.size - context + 1):
        before = (cumulative[index] - cumulative[index - context]) / context
        after = (cumulative[index + context] - cumulative[index]) / context
        scores[index] = abs(after - before)
    changes: list[float] = []
    for jump in np.flatnonzero(scores >= min_jump_db):
        window = scores[max(0, jump - context) : jump + context + 1]
        if scores[jump] >= window.max() and (not changes or stamps[jump] - changes[-1] > context * _step(stamps)):
            changes.append(float(stamps[jump]))
    return changes


def _step(stamps: np.ndarray) -> float:
    return float(stamps[1] - stamps[0]) if stamps.size > 1 else 0.0


# --------------------------------------------------------------------------------------------
# Streaming pass over a video file


class _EnergyMeter:
    """Accumulates mono samples and emits one dB value per full window (streaming)."""

    def __init__(self, rate: int, window_s: float) -> None:
        self.size = max(1, int(round(rate * window_s)))
        self.rate = rate
        self.pending = np.zeros(0, dtype=np.float64)
        self.consumed = 0
        self.times: list[float] = []
        self.values: list[float] = []

    def feed(self, samples: np.ndarray) -> None:
        self.pending = np.concatenate([self.pending, samples.astype(np.float64, copy=False)])
        count = len(self.pending) // self.size
        if count == 0:
            return
        block = self.pending[: count * self.size].reshape(count, self.size)
        power = (block**2).mean(axis=1)
        self.values.extend((10.0 * np.log10(power + _SILENCE_POWER)).tolist())
        self.times.extend(((self.consumed + np.arange(count) * self.size) / self.rate).tolist())
        self.consumed += count * self.size
        self.pending = self.pending[count * self.size :]


def scan_video(
    path: Path,
    *,
    thumb_width: int = THUMB_WIDTH,
    audio_window_s: float = AUDIO_WINDOW_S,
) -> Boundaries:
    """One streaming PyAV pass: shot cuts over every decoded frame and audio change points.

    Times are seconds from the first decoded video frame, the same origin as the sampled frames'
    ``t`` (:mod:`qwen_dataset.ingest.frames`). A file without audio yields no audio changes.
    """
    import av  # PyAV is a core dependency; imported here to keep module import light

    cut_times: list[float] = []
    cut_scores: list[float] = []
    previous: np.ndarray | None = None
    video_origin: float | None = None
    audio_origin: float | None = None
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream; scan_video needs a video file")
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        audio = container.streams.audio[0] if container.streams.audio else None
        meter = _EnergyMeter(AUDIO_RATE, audio_window_s)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
        fallback_rate = float(video.average_rate or 25)
        for packet in container.demux(*[stream for stream in (video, audio) if stream is not None]):
            # Only the video and audio streams are demuxed: a frame is one of the two.
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    t = frame.time if frame.time is not None else len(cut_times) / fallback_rate
                    video_origin = t if video_origin is None else video_origin
                    height = max(1, round(frame.height * thumb_width / max(1, frame.width)))
                    thumb = frame.to_ndarray(width=thumb_width, height=height, format="rgb24")
                    cut_times.append(t - video_origin)
                    cut_scores.append(0.0 if previous is None else _thumb_difference(previous, thumb))
                    previous = thumb
                elif isinstance(frame, av.AudioFrame):
                    if audio_origin is None:
                        audio_origin = frame.time or 0.0
                    for mono in resampler.resample(frame):
                        meter.feed(mono.to_ndarray().reshape(-1))
        if audio is not None:
            for mono in resampler.resample(None):
                meter.feed(mono.to_ndarray().reshape(-1))
    cuts = detect_peaks(cut_times, cut_scores, floor=CUT_FLOOR, mad_k=CUT_MAD_K, min_separation_s=MIN_CUT_SEPARATION_S)
    shift = (audio_origin or 0.0) - (video_origin or 0.0)
    changes = [t + shift for t in energy_change_points(meter.times, meter.values)]
    return Boundaries(cuts=tuple(cuts), audio_changes=tuple(changes), source="video_scan")
