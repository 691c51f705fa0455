"""The default prelabel backend: RapidOCR for ``ocr``, classical engines on top of it for the rest.

* ``ocr``: :class:`~qwen_dataset.prelabel.rapidocr_backend.RapidOcrBackend`, unchanged (its worker
  processes included);
* ``gui_action``: OCR lines + OpenCV outlines -> elements, instruction -> action (:mod:`.gui`);
* ``image_to_code``: elements + lines -> XY-cut layout tree -> HTML/CSS (:mod:`.layout_code`);
* ``spatial``: colour-region proposals -> relations and depth order (:mod:`.spatial`);
* ``video_event``: one event per segment between cuts / audio changes (:mod:`.video`).

Within one run (a backend returned by :meth:`ClassicalBackend.with_run_options`) each frame is read
by OCR once: the regions are kept for the tasks that follow (at most ``OCR_CACHE_FRAMES`` frames;
beyond that a frame is read again). A frame that cannot be read or processed gets a failure
outcome with the reason; nothing stops the batch.

``author`` is the OCR engine's plus ``+classical-cv``; ``version`` holds the OCR version, every
engine's parameters and a digest of the instructions, so changing any of them marks the data stale.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qwen_dataset.payloads import TASK_ORDER
from qwen_dataset.prelabel.base import FrameInput, PrelabelBackend, PrelabelOutcome
from qwen_dataset.prelabel.classical.gui import GUI_VERSION, gui_payload
from qwen_dataset.prelabel.classical.layout_code import LAYOUT_VERSION, code_payload
from qwen_dataset.prelabel.classical.spatial import SPATIAL_VERSION, spatial_payload
from qwen_dataset.prelabel.classical.video import VIDEO_VERSION, event_payload_from_segments
from qwen_dataset.prelabel.instructions import instruction_digest
from qwen_dataset.prelabel.rapidocr_backend import RapidOcrBackend, load_bgr_image
from qwen_dataset.prelabel.video_events import Boundaries, cuts_from_sampled_frames, group_video_frames, scan_video
from qwen_dataset.records import Task

OCR_CACHE_FRAMES = 2048
CLASSICAL_AUTHOR = "classical-cv"


@dataclasses.dataclass
class _RunOptions:
    instruction: str | None = None
    instructions: Mapping[str, str] = dataclasses.field(default_factory=dict)
    video_path_for: Callable[[str], Path | None] | None = None


def _screen_text(text: Mapping[str, PrelabelOutcome], frame: FrameInput) -> list[str]:
    """The OCR lines of a frame (none when its OCR failed)."""
    outcome = text.get(frame.frame_id)
    regions = outcome.payload["regions"] if outcome is not None and outcome.payload else []
    return [str(region.get("text", "")) for region in regions]


class ClassicalBackend(PrelabelBackend):
    """All five tasks on the CPU (see the module docstring)."""

    tasks: Sequence[str] = TASK_ORDER

    def __init__(self, ocr: RapidOcrBackend) -> None:
        self.ocr = ocr
        self.options = _RunOptions()
        self._regions: OrderedDict[tuple[str, str], list[dict[str, Any]]] = OrderedDict()

    @property
    def author(self) -> str:
        return f"{self.ocr.author}+{CLASSICAL_AUTHOR}"

    @property
    def version(self) -> str:
        parts = [self.ocr.version, GUI_VERSION, LAYOUT_VERSION, SPATIAL_VERSION, VIDEO_VERSION]
        if self.options.instruction:
            parts.append(f"instruction={instruction_digest({'': self.options.instruction})}")
        if self.options.instructions:
            parts.append(f"instructions={instruction_digest(self.options.instructions)}")
        return ";".join(parts)

    def with_run_options(
        self,
        *,
        instruction: str | None = None,
        video_path_for: Callable[[str], Path | None] | None = None,
        instructions: Mapping[str, str] | None = None,
    ) -> ClassicalBackend:
        clone = copy.copy(self)
        clone.options = _RunOptions(instruction or None, dict(instructions or {}), video_path_for)
        clone._regions = OrderedDict()  # one run's OCR results, never shared with another run
        return clone

    # -- OCR, once per frame and run ------------------------------------------------------------

    def _key(self, frame: FrameInput) -> tuple[str, str]:
        return (frame.frame_id, str(frame.image_path))

    def _remember(self, frame: FrameInput, regions: list[dict[str, Any]]) -> None:
        self._regions[self._key(frame)] = regions
        self._regions.move_to_end(self._key(frame))
        while len(self._regions) > OCR_CACHE_FRAMES:
            self._regions.popitem(last=False)

    def _read_text(self, frames: Sequence[FrameInput]) -> dict[str, PrelabelOutcome]:
        """OCR outcomes of ``frames`` by frame id, from this run's earlier reading where there is one."""
        known = {frame.frame_id: self._regions.get(self._key(frame)) for frame in frames}
        todo = [frame for frame in frames if known[frame.frame_id] is None]
        outcomes = {
            frame_id: PrelabelOutcome(frame_id, Task.OCR.value, {"regions": regions})
            for frame_id, regions in known.items()
            if regions is not None
        }
        by_id = {frame.frame_id: frame for frame in todo}
        for outcome in self.ocr.annotate(todo, Task.OCR.value) if todo else ():
            outcomes[outcome.frame_id] = outcome
            if outcome.payload is not None:
                self._remember(by_id[outcome.frame_id], outcome.payload["regions"])
        return outcomes

    # -- tasks ------------------------------------------------------------------------------------

    def annotate(self, frames: Sequence[FrameInput], task: str) -> Iterator[PrelabelOutcome]:
        if task not in self.tasks:
            raise ValueError(f"the classical backend prelabels {list(self.tasks)}, not {task!r}")
        if not frames:
            return
        if task == Task.OCR:
            yield from self._read_text(frames).values()
        elif task == Task.VIDEO_EVENT:
            yield from self._video_events(frames)
        elif task == Task.SPATIAL:
            for frame in frames:
                yield self._on_picture(frame, task, lambda bgr, _regions: spatial_payload(bgr[:, :, ::-1]), None)
        else:
            text = self._read_text(frames)
            build = self._gui if task == Task.GUI_ACTION else self._code
            for frame in frames:
                yield self._on_picture(frame, task, functools.partial(build, frame), text[frame.frame_id])

    def _gui(self, frame: FrameInput, bgr: np.ndarray, regions: list[dict[str, Any]]) -> dict[str, Any]:
        instruction = self.options.instructions.get(frame.upload_id) or self.options.instruction
        return gui_payload(bgr, regions, instruction)

    def _code(self, frame: FrameInput, bgr: np.ndarray, regions: list[dict[str, Any]]) -> dict[str, Any]:
        return code_payload(bgr, gui_payload(bgr, regions, None)["elements"], regions)

    def _on_picture(
        self,
        frame: FrameInput,
        task: str,
        build: Callable[[np.ndarray, list[dict[str, Any]]], dict[str, Any]],
        text: PrelabelOutcome | None,
    ) -> PrelabelOutcome:
        def failure(error: str) -> PrelabelOutcome:
            return PrelabelOutcome(frame.frame_id, task, None, error=error)

        if text is not None and text.payload is None:
            return failure(f"OCR, which this task builds on, failed: {text.error}")
        try:
            bgr = load_bgr_image(Path(frame.image_path))
        except Exception as error:
            return failure(f"could not read image {frame.image_path}: {type(error).__name__}: {error}")
        if bgr.shape[:2] != (frame.height, frame.width):
            return failure(
                f"image size mismatch: {frame.image_path} is {bgr.shape[1]}x{bgr.shape[0]} but the frame record "
                f"says {frame.width}x{frame.height}; re-extract the frames of upload {frame.upload_id}"
            )
        regions = list(text.payload["regions"]) if text is not None and text.payload else []
        try:
            return PrelabelOutcome(frame.frame_id, task, build(bgr, regions))
        except Exception as error:  # noqa: BLE001 - one odd picture must not stop the batch
            return failure(f"the {task} engine failed on {frame.image_path}: {type(error).__name__}: {error}")

    def _boundaries(self, members: Sequence[FrameInput]) -> Boundaries:
        path = self.options.video_path_for(members[0].upload_id) if self.options.video_path_for else None
        if path is not None and Path(path).is_file():
            return scan_video(Path(path))
        times = [float(frame.t or 0.0) for frame in members]
        cuts = cuts_from_sampled_frames([Path(frame.image_path) for frame in members], times)
        return Boundaries(cuts=tuple(cuts), source="sampled_frames")

    def _video_events(self, frames: Sequence[FrameInput]) -> Iterator[PrelabelOutcome]:
        for members in group_video_frames(frames).values():
            anchor = members[0]
            try:
                boundaries = self._boundaries(members)
                last = max(float(frame.t or 0.0) for frame in members)
                duration = float(anchor.duration) if anchor.duration else last + 1.0
                text = self._read_text(members)
                payload = event_payload_from_segments(
                    members, boundaries, duration, functools.partial(_screen_text, text)
                )
            except Exception as error:  # noqa: BLE001 - one bad video must not stop the batch
                yield PrelabelOutcome(
                    anchor.frame_id,
                    Task.VIDEO_EVENT.value,
                    None,
                    error=f"video events failed: {type(error).__name__}: {error}",
                )
                continue
            yield PrelabelOutcome(anchor.frame_id, Task.VIDEO_EVENT.value, payload)
