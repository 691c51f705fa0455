"""The prelabel backend interface: what every pre-annotation engine implements.

A backend turns frames into task payloads. The ``ai_annotations`` asset only sees this
interface, so swapping RapidOCR (CPU) for Qwen3-VL on vLLM (GPU) is a resource change.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from qwen_dataset.payloads import PayloadError, task_spec, validate_payload
from qwen_dataset.records import (
    AnnotationRecord,
    AnnotationStatus,
    Source,
    annotation_id_for,
    dump_payload,
    utc_now,
)


@dataclasses.dataclass(frozen=True)
class FrameInput:
    """What a backend needs to know about one frame."""

    frame_id: str
    upload_id: str
    batch: str
    width: int
    height: int
    image_path: Path  # the enhanced copy for low-light frames, else the frame itself
    t: float | None = None
    duration: float | None = None  # seconds of the whole video a sampled frame comes from


@dataclasses.dataclass(frozen=True)
class PrelabelOutcome:
    """A backend's answer for one frame and task: a payload, or the reason there is none.

    For ``video_event`` one outcome covers a whole video and is filed under the ``frame_id`` of
    the video's first sampled frame (:func:`qwen_dataset.prelabel.video_events.anchor_frames`).
    """

    frame_id: str
    task: str
    payload: dict[str, Any] | None
    error: str = ""
    raw: str = ""  # the model's raw text, kept for failures


class BackendNotReady(RuntimeError):
    """The engine cannot annotate at all (a server down, a wrong key or model): the message says what to fix."""


class PrelabelBackend(abc.ABC):
    """A pre-annotation engine: everything the ``ai_annotations`` asset asks of one.

    ``author`` goes into every record's provenance (e.g. ``rapidocr-onnxruntime==1.4.4``);
    ``version`` changes whenever its output could change (model, templates, parameters) and is
    part of the ``ai_annotations`` code version, so a change marks downstream assets stale.
    """

    @property
    @abc.abstractmethod
    def author(self) -> str: ...

    @property
    @abc.abstractmethod
    def version(self) -> str: ...

    @property
    @abc.abstractmethod
    def tasks(self) -> Sequence[str]:
        """The tasks this backend can annotate."""

    @abc.abstractmethod
    def annotate(self, frames: Sequence[FrameInput], task: str) -> Iterator[PrelabelOutcome]:
        """Yield exactly one outcome per input frame (in any order); for ``video_event``, one per video."""

    def check_ready(self) -> None:
        """Raise :class:`BackendNotReady`, saying what to fix, when the engine cannot run at all.

        Called once at the start of a run that has frames to annotate, so a run against a server
        that is down stops with one message instead of writing a failed row for every frame. An
        engine inside this process is always ready (the default).
        """
        return None

    def applies_to(self, task: str) -> tuple[str, ...]:
        """Frame kinds (``image``, ``page``, ``video_frame``) the task is meant for: the payload
        registry's by default; a backend whose templates say otherwise overrides this."""
        return task_spec(task).frame_kinds

    def with_run_options(
        self,
        *,
        instruction: str | None = None,
        video_path_for: Callable[[str], Path | None] | None = None,
        instructions: Mapping[str, str] | None = None,
    ) -> PrelabelBackend:
        """This backend with one run's options: the GUI instruction (None: the backend's default),
        ``video_path_for(upload_id)``, the original video file, and ``instructions``, a GUI
        instruction per upload id (:mod:`qwen_dataset.prelabel.instructions`) that wins over the
        run's. A backend that uses none of them returns itself."""
        return self


def outcomes_to_records(
    outcomes: Iterable[PrelabelOutcome],
    frames: Sequence[FrameInput],
    task: str,
    author: str,
    template_version: str,
) -> list[AnnotationRecord]:
    """Turn one task's outcomes into records: exactly one per frame, a missing outcome a failure."""
    created_at = utc_now()

    def record(frame: FrameInput, status: str, error: str, payload: dict[str, Any]) -> AnnotationRecord:
        return AnnotationRecord(
            annotation_id=annotation_id_for(frame.frame_id, task, Source.AI, author),
            frame_id=frame.frame_id,
            upload_id=frame.upload_id,
            batch=frame.batch,
            task=task,
            source=Source.AI,
            author=author,
            template_version=template_version,
            created_at=created_at,
            status=status,
            error=error,
            payload=dump_payload(payload),
            reviewed=False,
        )

    answered = {outcome.frame_id: outcome for outcome in outcomes if outcome.task == task}
    records: list[AnnotationRecord] = []
    for frame in frames:
        outcome = answered.get(frame.frame_id)
        if outcome is None:
            records.append(record(frame, AnnotationStatus.FAILED, "the backend returned no result for this frame", {}))
        elif outcome.payload is None:
            records.append(record(frame, AnnotationStatus.FAILED, outcome.error, {"raw": outcome.raw}))
        else:
            problem = _shape_problem(task, outcome.payload)
            if problem:
                records.append(record(frame, AnnotationStatus.FAILED, f"invalid_payload: {problem}", {}))
            else:
                records.append(record(frame, AnnotationStatus.OK, "", outcome.payload))
    return records


def _shape_problem(task: str, payload: dict[str, Any]) -> str:
    """Why a backend's payload does not have its task's shape (a backend bug, kept as a failure row)."""
    try:
        validate_payload(task, payload)
    except PayloadError as error:
        return str(error)
    return ""
