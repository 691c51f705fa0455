"""Video events in the workbench: what the timeline editor is shown, and what it sends back.

A ``video_event`` work item is one video (filed, as the pipeline files its events, under the
video's first sampled frame). Its :class:`VideoContext` - stored with the item when the batch
is imported - holds what the editor needs besides the file itself: the duration, the sampled
frames (their times and ids), and the anchors event boundaries snap to: shot cuts and audio
change points from :func:`qwen_dataset.prelabel.video_events.scan_video`, the same the prelabel
backend aligns the AI's events to. A pre-annotation whose alignment came from a full scan brings
them along; otherwise (no pre-annotation, or anchors from the sampled frames only) the import
scans the video once.

The editor sends the events as ``[{"start": s, "end": s, "description": "..."}]`` (seconds);
:func:`payload_from_events` checks them and builds the canonical payload (events sorted, each
with the sampled frames inside it, the context's anchors as its ``alignment``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qwen_dataset.payloads import PayloadError, validate_payload
from qwen_dataset.prelabel.video_events import DEFAULT_TOLERANCE_S, frame_ids_for_event, scan_video
from qwen_dataset.records import Task

#: ``template_version`` of events saved from the workbench's timeline editor.
EDITOR_VERSION = "workbench-timeline-1"
MAX_EVENTS = 1000
#: A playhead at the last frame may read a little past the container's duration.
END_TOLERANCE_S = 0.1


class EventsInvalid(ValueError):
    """What the timeline editor sent cannot be stored; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class VideoContext:
    duration: float | None = None  # seconds; None when the frames manifest does not know it
    frames: tuple[tuple[float, str], ...] = ()  # (t, frame_id) of the sampled frames, in time order
    cuts: tuple[float, ...] = ()
    audio_changes: tuple[float, ...] = ()
    source: str = "none"  # where the anchors come from: video_scan | sampled_frames | none
    tolerance_s: float = DEFAULT_TOLERANCE_S

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> VideoContext:
        data = json.loads(text or "{}") or {}
        return cls(
            duration=data.get("duration"),
            frames=tuple((float(t), str(frame_id)) for t, frame_id in data.get("frames") or []),
            cuts=tuple(float(t) for t in data.get("cuts") or []),
            audio_changes=tuple(float(t) for t in data.get("audio_changes") or []),
            source=str(data.get("source") or "none"),
            tolerance_s=float(data.get("tolerance_s", DEFAULT_TOLERANCE_S)),
        )

    @property
    def alignment(self) -> dict[str, Any]:
        """The payload's ``alignment``: what the events were snapped to."""
        return {
            "source": self.source,
            "tolerance_s": self.tolerance_s,
            "cuts": list(self.cuts),
            "audio_changes": list(self.audio_changes),
        }

    def for_editor(self) -> dict[str, Any]:
        return {
            "duration": self.duration,
            "cuts": list(self.cuts),
            "audio_changes": list(self.audio_changes),
            "anchors": self.source,
            "frames": [t for t, _ in self.frames],
        }


def context_for_video(
    frames: Sequence[tuple[float, str]],
    duration: float | None,
    ai_payload: Mapping[str, Any] | None,
    video_path: Path | None,
) -> VideoContext:
    """The context of one video: its sampled frames and duration, and anchors from the AI's
    alignment when it scanned the whole file, else from a scan now, else whatever the AI had."""
    alignment = dict((ai_payload or {}).get("alignment") or {})
    ordered = tuple(sorted((float(t), str(frame_id)) for t, frame_id in frames))
    known = duration if duration is not None and math.isfinite(duration) else None
    base = VideoContext(known, ordered, tolerance_s=float(alignment.get("tolerance_s", DEFAULT_TOLERANCE_S)))
    if alignment.get("source") != "video_scan" and video_path is not None and video_path.is_file():
        try:
            found = scan_video(video_path)
        except (OSError, ValueError, RuntimeError):  # PyAV's errors are OSError/ValueError subclasses
            found = None
        if found is not None:
            return dataclasses.replace(
                base, cuts=_rounded(found.cuts), audio_changes=_rounded(found.audio_changes), source=found.source
            )
    return dataclasses.replace(
        base,
        cuts=_rounded(alignment.get("cuts") or ()),
        audio_changes=_rounded(alignment.get("audio_changes") or ()),
        source=str(alignment.get("source") or "none"),
    )


def _rounded(times: Sequence[float]) -> tuple[float, ...]:
    return tuple(round(float(t), 3) for t in times)


def editor_events(payload: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """A payload's events as the editor shows them: start, end, description, in time order."""
    events = [
        {"start": float(event["start"]), "end": float(event["end"]), "description": str(event.get("description", ""))}
        for event in (payload or {}).get("events") or []
    ]
    return sorted(events, key=lambda event: (event["start"], event["end"]))


def payload_from_events(context: VideoContext, events: Any) -> dict[str, Any]:
    """The canonical ``video_event`` payload of what the editor sent; :class:`EventsInvalid` if it cannot be."""
    if not isinstance(events, list) or not all(isinstance(event, dict) for event in events):
        raise EventsInvalid("'result' must be the list of events, each {start, end, description}")
    if len(events) > MAX_EVENTS:
        raise EventsInvalid(f"{len(events)} events; at most {MAX_EVENTS} are accepted in one video")
    cleaned = [_checked_event(number, event, context) for number, event in enumerate(events, start=1)]
    cleaned.sort(key=lambda event: (event["start"], event["end"]))
    times = [t for t, _ in context.frames]
    ids = [frame_id for _, frame_id in context.frames]
    for event in cleaned:
        event["frame_ids"] = frame_ids_for_event(event["start"], event["end"], times, ids)
    payload = {"events": cleaned, "alignment": context.alignment}
    try:
        return validate_payload(Task.VIDEO_EVENT.value, payload)
    except PayloadError as error:
        raise EventsInvalid(str(error)) from None


def _checked_event(number: int, event: dict[str, Any], context: VideoContext) -> dict[str, Any]:
    where = f"event {number}"
    try:
        start, end = float(event["start"]), float(event["end"])
    except (KeyError, TypeError, ValueError):
        raise EventsInvalid(f"{where}: needs a start and an end in seconds") from None
    if not (math.isfinite(start) and math.isfinite(end)):
        raise EventsInvalid(f"{where}: its start and end must be finite numbers of seconds")
    if start < 0 or start > end:
        raise EventsInvalid(f"{where}: it runs from {start:.3f} s to {end:.3f} s; set its start before its end")
    if context.duration is not None and end > context.duration + END_TOLERANCE_S:
        raise EventsInvalid(f"{where}: it ends at {end:.3f} s, after the video's end ({context.duration:.3f} s)")
    description = event.get("description", "")
    if not isinstance(description, str):
        raise EventsInvalid(f"{where}: its description must be text")
    return {"start": start, "end": min(end, context.duration or end), "description": description.strip()}
