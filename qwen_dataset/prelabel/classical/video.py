"""Video events without a model: one event per segment between shot cuts and audio change points.

The boundaries are the ones the project already computes to snap event times
(:mod:`qwen_dataset.prelabel.video_events`): cuts and audio changes from one streaming pass over
the video file when it is at hand, else cuts among the sampled frames. Each stretch between two
consecutive boundaries (the video's start and end included) is one event: ``start``/``end`` in
seconds, the sampled frames inside it, a ``keyframe`` (the sampled frame nearest its middle), and a
description seeded with what is known for certain: which segment it is and the text on screen in
that keyframe (its OCR lines), e.g. ``Segment 2 of 3. On screen: t=02.000 | frame 000050``. It is
true but says nothing of what happens, so the event is marked ``needs_description`` for the
person who writes that (a seed never pretends to be a description). Segments shorter than
``MIN_SEGMENT_S`` are merged into the one before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from qwen_dataset.prelabel.base import FrameInput
from qwen_dataset.prelabel.video_events import Boundaries, frame_ids_for_event

MIN_SEGMENT_S = 0.5
SEED_CHARS = 120
VIDEO_VERSION = f"segments-2;min{MIN_SEGMENT_S:g}"


def segments(boundaries: Sequence[float], duration: float) -> list[tuple[float, float]]:
    """``(start, end)`` stretches between the sorted boundaries inside ``(0, duration)``.

    >>> segments([2.0, 4.0, 4.2], 6.0)
    [(0.0, 2.0), (2.0, 4.2), (4.2, 6.0)]
    """
    inner = sorted({round(t, 3) for t in boundaries if 0 < t < duration})
    edges = [0.0]
    for t in inner:
        if t - edges[-1] >= MIN_SEGMENT_S:
            edges.append(t)
        elif len(edges) > 1:
            edges[-1] = t  # too short: the segment before grows to this boundary
    if duration - edges[-1] < MIN_SEGMENT_S and len(edges) > 1:
        edges.pop()
    edges.append(float(duration))
    return list(zip(edges[:-1], edges[1:]))


def keyframe(start: float, end: float, frames: Sequence[FrameInput]) -> FrameInput:
    """The sampled frame nearest the middle of ``[start, end]``."""
    middle = (start + end) / 2
    return min(frames, key=lambda frame: abs(float(frame.t or 0.0) - middle))


def seed_description(number: int, count: int, texts: Sequence[str]) -> str:
    """The seed of an event's description: which segment it is, and the text on screen (if any).

    >>> seed_description(2, 3, ["t=02.000", "", "frame 000050"])
    'Segment 2 of 3. On screen: t=02.000 | frame 000050'
    """
    shown = " | ".join(text.strip() for text in texts if text.strip())[:SEED_CHARS]
    where = f"Segment {number} of {count}."
    return f"{where} On screen: {shown}" if shown else where


def event_payload_from_segments(
    frames: Sequence[FrameInput],
    boundaries: Boundaries,
    duration: float,
    screen_text: Callable[[FrameInput], list[str]],
) -> dict[str, Any]:
    """The ``video_event`` payload of one video (its sampled ``frames`` in time order)."""
    times = [float(frame.t or 0.0) for frame in frames]
    ids = [frame.frame_id for frame in frames]
    events = []
    stretches = segments(boundaries.anchors, duration)
    for number, (start, end) in enumerate(stretches, start=1):
        key = keyframe(start, end, frames)
        events.append(
            {
                "start": start,
                "end": end,
                "description": seed_description(number, len(stretches), screen_text(key)),
                "frame_ids": frame_ids_for_event(start, end, times, ids),
                "keyframe": key.frame_id,
                "needs_description": True,
            }
        )
    return {
        "events": events,
        "alignment": {
            "source": boundaries.source,
            "tolerance_s": 0.0,
            "cuts": [round(t, 3) for t in boundaries.cuts],
            "audio_changes": [round(t, 3) for t in boundaries.audio_changes],
        },
    }
