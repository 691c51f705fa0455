"""Jobs: one request each, a frame or a window of a video's sampled frames; shared by the served and
the in-process backends. A video's windows are gathered, merged and aligned into one outcome.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from qwen_dataset.prelabel.base import FrameInput, PrelabelOutcome
from qwen_dataset.prelabel.templates import (
    AnswerContext,
    AnswerError,
    Template,
)
from qwen_dataset.prelabel.video_events import (
    Boundaries,
    cuts_from_sampled_frames,
    event_payload,
    group_video_frames,
    scan_video,
)
from qwen_dataset.prelabel.vllm.protocol import RAW_LIMIT, build_messages
from qwen_dataset.prelabel.vllm.settings import VIDEO_TASK


@dataclasses.dataclass(frozen=True)
class Job:
    """One request: a frame, or a window of a video's sampled frames."""

    outcome_id: str  # frame id the outcome is filed under (a video's first sampled frame)
    window: int  # this request's index among its outcome's requests
    windows: int
    frames: tuple[FrameInput, ...]
    slack_s: float = 0.0  # video: how far past the shown timestamps an event may reach
    precheck_error: str = ""  # set when the job cannot be sent at all


def plan_jobs(frames: Sequence[FrameInput], task: str, max_images_per_request: int) -> Iterator[Job]:
    """Lazily: one job per frame, or for ``video_event`` windows of each video's frames in time order."""
    if task != VIDEO_TASK:
        for frame in frames:
            yield Job(outcome_id=frame.frame_id, window=0, windows=1, frames=(frame,))
        return
    for members in group_video_frames(frames).values():
        anchor = members[0].frame_id
        times = [float(frame.t) for frame in members if frame.t is not None]
        if len(times) < len(members):
            yield Job(
                anchor,
                0,
                1,
                tuple(members),
                precheck_error="no_timestamps: video_event needs each sampled frame's time t; these frames have none",
            )
            continue
        steps = [later - earlier for earlier, later in zip(times, times[1:]) if later > earlier]
        slack = statistics.median(steps) if steps else 1.0
        windows = [
            tuple(members[start : start + max_images_per_request])
            for start in range(0, len(members), max_images_per_request)
        ]
        for index, window in enumerate(windows):
            yield Job(anchor, index, len(windows), window, slack_s=slack)


def job_messages(job: Job, template: Template, image_urls: Sequence[str], instruction: str) -> list[dict[str, Any]]:
    timestamps = [float(frame.t or 0.0) for frame in job.frames] if template.task == VIDEO_TASK else None
    return build_messages(template, image_urls, instruction=instruction, timestamps=timestamps)


def job_context(job: Job, instruction: str) -> AnswerContext:
    """Parsing context: the ORIGINAL frame size (not the downscaled one) and the video window."""
    first = job.frames[0]
    times = [float(frame.t or 0.0) for frame in job.frames]
    return AnswerContext(
        width=first.width,
        height=first.height,
        instruction=instruction,
        window_start=min(times),
        window_end=max(times),
        window_slack=job.slack_s,
    )


def job_failure(job: Job, task: str, error: str, raw: str) -> PrelabelOutcome:
    if job.windows > 1:
        first, last = job.frames[0].t or 0.0, job.frames[-1].t or 0.0
        error = f"window {job.window + 1}/{job.windows} ({first:.1f}-{last:.1f} s): {error}"
    return PrelabelOutcome(frame_id=job.outcome_id, task=task, payload=None, error=error, raw=raw[:RAW_LIMIT])


def truncation_error(error: AnswerError, max_tokens: int) -> str:
    return f"truncated: the answer hit max_tokens={max_tokens} before it was complete ({error})"


@dataclasses.dataclass
class VideoState:
    frames: list[FrameInput]
    received: int = 0
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    failure: PrelabelOutcome | None = None


class VideoCollector:
    """Gathers the windows of each video; a video is complete when all its windows are in."""

    def __init__(self, frames: Sequence[FrameInput]) -> None:
        self.states = {
            members[0].frame_id: VideoState(frames=members) for members in group_video_frames(frames).values()
        }

    def has_failed(self, job: Job) -> bool:
        return self.states[job.outcome_id].failure is not None

    def add(self, job: Job, result: dict[str, Any] | PrelabelOutcome | None) -> VideoState | None:
        """Record one window's parsed answer, failure, or ``None`` (skipped); the state once complete."""
        state = self.states[job.outcome_id]
        state.received += 1
        if isinstance(result, PrelabelOutcome) and state.failure is None:
            state.failure = result
        elif isinstance(result, dict):
            state.events.extend(result["events"])
        return state if state.received == job.windows else None


def video_boundaries(members: Sequence[FrameInput], video_path_for: Callable[[str], Path | None] | None) -> Boundaries:
    """Anchors for event alignment: a full scan of the video file when we know it, else the sampled frames."""
    if video_path_for is not None:
        path = video_path_for(members[0].upload_id)
        if path is not None and Path(path).is_file():
            try:
                return scan_video(Path(path))
            except (OSError, ValueError):
                pass  # an unreadable file still leaves the sampled frames to align to
    try:
        cuts = cuts_from_sampled_frames(
            [frame.image_path for frame in members], [float(frame.t or 0.0) for frame in members]
        )
    except (OSError, ValueError):
        return Boundaries()
    return Boundaries(cuts=tuple(cuts), source="sampled_frames")


def finish_video(state: VideoState, boundaries: Boundaries, tolerance_s: float) -> PrelabelOutcome:
    """The one outcome of a video: its failure, or merged and aligned events."""
    if state.failure is not None:
        return state.failure
    payload = event_payload(
        state.events,
        boundaries,
        [float(frame.t or 0.0) for frame in state.frames],
        [frame.frame_id for frame in state.frames],
        tolerance=tolerance_s,
    )
    return PrelabelOutcome(frame_id=state.frames[0].frame_id, task=VIDEO_TASK, payload=payload)
