"""What the served and the in-process Qwen3-VL backends share: templates, settings and run options."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Self

from qwen_dataset.prelabel.base import FrameInput, PrelabelBackend
from qwen_dataset.prelabel.instructions import instruction_digest
from qwen_dataset.prelabel.templates import Template, load_templates
from qwen_dataset.prelabel.vllm.settings import InProcessSettings, VllmSettings, qwen_backend_version


class QwenTemplatedBackend(PrelabelBackend):
    """A Qwen3-VL backend driven by the task templates (``settings.tasks``, ``settings.templates_dir``).

    ``video_path_for(upload_id) -> Path | None`` (optional): the original video file, so
    ``video_event`` boundaries align to cuts over every decoded frame and to audio changes
    instead of to cuts among the sampled frames only.
    """

    engine: ClassVar[str]  # names the serving mode in the version string
    settings: VllmSettings | InProcessSettings

    def __init__(
        self, settings: VllmSettings | InProcessSettings, *, video_path_for: Callable[[str], Path | None] | None = None
    ) -> None:
        self.settings = settings
        self.templates: dict[str, Template] = load_templates(
            settings.tasks, Path(settings.templates_dir) if settings.templates_dir else None
        )
        self.video_path_for = video_path_for
        self.instructions: dict[str, str] = {}  # upload_id -> GUI instruction (the batch's file)

    @property
    def author(self) -> str:
        return self.settings.model

    @property
    def tasks(self) -> Sequence[str]:
        return tuple(self.templates)

    def template(self, task: str) -> Template:
        try:
            return self.templates[task]
        except KeyError:
            raise ValueError(
                f"the {self.engine} backend is not configured for task {task!r}; it runs {list(self.templates)}"
            ) from None

    def template_version(self, task: str) -> str:
        return self.template(task).version_tag

    def applies_to(self, task: str) -> tuple[str, ...]:
        """Frame kinds (``image``, ``page``, ``video_frame``) the task's template is meant for."""
        return self.template(task).applies_to

    def with_run_options(
        self,
        *,
        instruction: str | None = None,
        video_path_for: Callable[[str], Path | None] | None = None,
        instructions: Mapping[str, str] | None = None,
    ) -> Self:
        """A copy with one run's options (the GUI instruction, the per-file instructions, the video
        files); what it has loaded already (an engine) is shared."""
        clone = copy.copy(self)
        if instruction:
            clone.settings = dataclasses.replace(self.settings, gui_instruction=instruction)
        if video_path_for is not None:
            clone.video_path_for = video_path_for
        clone.instructions = dict(instructions or {})
        return clone

    def instruction_for(self, frames: Sequence[FrameInput]) -> str:
        """The GUI instruction of a request: its upload's own (the batch's file), else the run's."""
        return (
            self.instructions.get(frames[0].upload_id, self.settings.gui_instruction)
            if frames
            else self.settings.gui_instruction
        )

    @property
    def version(self) -> str:
        """Model, template versions and every parameter that changes the output; no network."""
        version = qwen_backend_version(self.engine, self.settings, self.templates)
        if self.instructions and "gui_action" in self.templates:
            version += f";instructions={instruction_digest(self.instructions)}"
        return version
