"""Qwen3-VL pre-annotation with vLLM loaded in this process (``vllm.LLM``), no HTTP server.

For a single GPU machine that runs the Dagster step itself. Same templates, request messages,
answer parsing, retries of unusable answers and ``video_event`` windows as the HTTP backend
(:mod:`qwen_dataset.prelabel.vllm.backend`); structured output goes through
``SamplingParams(structured_outputs=StructuredOutputsParams(json=schema))``.

vLLM is the optional ``gpu`` extra and is imported only when the engine is first needed::

    pip install -e '.[gpu]'

Frames are processed in batches of ``batch_size`` jobs: each batch is one ``LLM.chat`` call
(vLLM batches it on the GPU), so memory stays bounded however many frames come in.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from qwen_dataset.prelabel.base import FrameInput, PrelabelOutcome
from qwen_dataset.prelabel.templates import AnswerError, Template, parse_answer
from qwen_dataset.prelabel.vllm.images import encode_image
from qwen_dataset.prelabel.vllm.jobs import (
    Job,
    VideoCollector,
    finish_video,
    job_context,
    job_failure,
    job_messages,
    plan_jobs,
    truncation_error,
    video_boundaries,
)
from qwen_dataset.prelabel.vllm.protocol import RequestFailed
from qwen_dataset.prelabel.vllm.settings import (
    VIDEO_TASK,
    InProcessSettings,
    next_budget,
    token_budget,
)
from qwen_dataset.prelabel.vllm.templated import QwenTemplatedBackend

INSTALL_HINT = "pip install -e '.[gpu]'"


class VllmNotInstalledError(ImportError):
    """vLLM (the optional ``gpu`` extra) is not installed."""


def require_vllm() -> Any:
    """Import and return the ``vllm`` module, or explain how to install it."""
    try:
        import vllm
    except ImportError as error:
        raise VllmNotInstalledError(
            f"the in-process Qwen3-VL backend needs vLLM, which is not installed here ({error}). "
            f"Install the GPU extra on a machine with an NVIDIA GPU: {INSTALL_HINT} - or use the HTTP "
            "backend (VllmPrelabelResource) against a `vllm serve` on another machine."
        ) from error
    return vllm


class InProcessVllmBackend(QwenTemplatedBackend):
    """:class:`~qwen_dataset.prelabel.base.PrelabelBackend` on an in-process ``vllm.LLM``.

    Outcome contract as :meth:`qwen_dataset.prelabel.vllm.backend.VllmBackend.annotate`
    (``video_event``: one outcome per video, under its first sampled frame's id).
    """

    engine = "vllm-inprocess"
    settings: InProcessSettings

    def __init__(
        self,
        settings: InProcessSettings | None = None,
        *,
        video_path_for: Callable[[str], Path | None] | None = None,
    ) -> None:
        super().__init__(settings or InProcessSettings(), video_path_for=video_path_for)
        self._llm: Any = None

    def llm(self) -> Any:
        """The engine, loaded on first use (loading a model takes a while and needs the GPU)."""
        if self._llm is None:
            vllm = require_vllm()
            self._llm = vllm.LLM(model=self.settings.model, **self.settings.engine_args)
        return self._llm

    def annotate(self, frames: Sequence[FrameInput], task: str) -> Iterator[PrelabelOutcome]:
        """Yield outcomes batch by batch; see the class docstring for the contract."""
        template = self.template(task)
        collector = VideoCollector(frames) if task == VIDEO_TASK else None
        jobs = plan_jobs(frames, task, self.settings.max_images_per_request)
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            while batch := [job for _, job in zip(range(self.settings.batch_size), jobs)]:
                for job, result in zip(batch, self._run_batch(template, batch, pool)):
                    outcome = self._settle(job, result, task, collector)
                    if outcome is not None:
                        yield outcome

    def _settle(
        self, job: Job, result: dict[str, Any] | PrelabelOutcome, task: str, collector: VideoCollector | None
    ) -> PrelabelOutcome | None:
        if collector is None:
            return result if isinstance(result, PrelabelOutcome) else PrelabelOutcome(job.outcome_id, task, result)
        state = collector.add(job, result)
        if state is None:
            return None
        if state.failure is not None:
            return state.failure
        return finish_video(state, video_boundaries(state.frames, self.video_path_for), self.settings.event_tolerance_s)

    def _run_batch(
        self, template: Template, batch: list[Job], pool: ThreadPoolExecutor
    ) -> list[dict[str, Any] | PrelabelOutcome]:
        vllm = require_vllm()
        from vllm.sampling_params import StructuredOutputsParams

        settings = self.settings
        results: list[dict[str, Any] | PrelabelOutcome | None] = [None] * len(batch)
        conversations: dict[int, list[dict[str, Any]]] = {}
        encoded_jobs = pool.map(lambda job: self._encode_job(job, template.task), batch)
        for index, (job, encoded) in enumerate(zip(batch, encoded_jobs)):
            if isinstance(encoded, PrelabelOutcome):
                results[index] = encoded
            else:
                conversations[index] = job_messages(
                    job, template, [image.data_url for image in encoded], self.instruction_for(job.frames)
                )
        # Per job: the budget of its next request, and whether an unusable answer may be asked again.
        budget = {index: token_budget(template, settings.max_tokens) for index in conversations}
        second_chance = set(conversations)
        todo = list(conversations)
        while todo:
            retry = []
            for tokens in sorted({budget[index] for index in todo}):
                group = [index for index in todo if budget[index] == tokens]
                params = vllm.SamplingParams(
                    temperature=0.0, max_tokens=tokens, structured_outputs=StructuredOutputsParams(json=template.schema)
                )
                outputs = self.llm().chat([conversations[i] for i in group], sampling_params=params, use_tqdm=False)
                for index, output in zip(group, outputs):
                    job, completion = batch[index], output.outputs[0]
                    try:
                        results[index] = parse_answer(
                            template, completion.text, job_context(job, self.instruction_for(job.frames))
                        )
                        continue
                    except AnswerError as error:
                        failure = str(error)
                        if completion.finish_reason == "length":
                            failure = truncation_error(error, tokens)
                            grown = next_budget(tokens, settings.retry_max_tokens)
                            if grown is not None:  # the same budget truncates the same way: more tokens
                                budget[index] = grown
                                retry.append(index)
                        elif index in second_chance:
                            second_chance.discard(index)
                            retry.append(index)
                        results[index] = job_failure(job, template.task, failure, completion.text)
            todo = retry
        settled = [result for result in results if result is not None]
        assert len(settled) == len(batch), "every job of a batch gets a result"
        return settled

    def _encode_job(self, job: Job, task: str) -> list[Any] | PrelabelOutcome:
        if job.precheck_error:
            return job_failure(job, task, job.precheck_error, "")
        settings = self.settings
        try:
            return [
                encode_image(frame.image_path, settings.max_pixels, settings.reencode_format) for frame in job.frames
            ]
        except RequestFailed as error:
            return job_failure(job, task, str(error), error.raw)
