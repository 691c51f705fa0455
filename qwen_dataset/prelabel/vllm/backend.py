"""Qwen3-VL pre-annotation through a vLLM server's OpenAI-compatible HTTP API.

Each frame (or each window of a video's sampled frames) becomes one ``POST
{base_url}/v1/chat/completions`` request::

    {"model": "Qwen/Qwen3-VL-4B-Instruct",
     "messages": [{"role": "system", ...}?,
                  {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}},
                                               {"type": "text", "text": <template prompt>}]}],
     "max_tokens": N, "temperature": 0,
     "response_format": {"type": "json_schema",
                         "json_schema": {"name": <task>, "schema": <template schema>, "strict": true}}}

``response_format`` is vLLM's current structured-output API (the old ``guided_json`` field was
removed in vLLM 0.12 and is never sent).

Concurrency: an asyncio event loop driven from the calling thread keeps up to
``max_concurrency`` requests in flight over pooled keep-alive ``httpx`` connections; images are read,
downscaled and base64-encoded lazily inside that window (in a small thread pool), so 10,000 frames
never sit in memory as payloads. :meth:`VllmBackend.annotate` stays a plain synchronous generator
that yields outcomes as they complete. Do not call it from inside a running event loop.

Failures never stop the batch. Connection errors, timeouts, HTTP 429 and 5xx are retried
``max_retries`` times with full-jitter exponential backoff (``Retry-After`` honoured); an answer
that fails parsing or validation is asked for ONE more time; then the frame gets a failure outcome
``error="<code>: <reason>"`` with the model's text in ``raw``.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from qwen_dataset.prelabel.base import BackendNotReady, FrameInput, PrelabelOutcome
from qwen_dataset.prelabel.templates import (
    AnswerError,
    Template,
    parse_answer,
)
from qwen_dataset.prelabel.video_events import (
    Boundaries,
)
from qwen_dataset.prelabel.vllm.client import (
    RETRY_AFTER_FLOOR_CAP_S,
    PooledClient,
    full_jitter_delay,
    parse_retry_after,
)
from qwen_dataset.prelabel.vllm.images import EncodedImage, encode_image
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
from qwen_dataset.prelabel.vllm.protocol import (
    CHAT_PATH,
    MODELS_PATH,
    RAW_LIMIT,
    RequestFailed,
    build_request_body,
    completion_content,
    encode_request,
    error_message_of,
    image_placeholder,
    with_budget,
)
from qwen_dataset.prelabel.vllm.settings import VIDEO_TASK, VllmSettings, next_budget, token_budget
from qwen_dataset.prelabel.vllm.templated import QwenTemplatedBackend


class ServerCheckError(BackendNotReady):
    """The vLLM server is unreachable or does not serve the configured model."""


class VllmBackend(QwenTemplatedBackend):
    """The Qwen3-VL prelabel backend (implements :class:`~qwen_dataset.prelabel.base.PrelabelBackend`).

    ``video_path_for(upload_id) -> Path | None`` (optional): the original video file, so
    ``video_event`` boundaries align to cuts over every decoded frame and to audio changes
    instead of to cuts among the sampled frames only.
    """

    def __init__(
        self,
        settings: VllmSettings,
        *,
        video_path_for: Callable[[str], Path | None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(settings, video_path_for=video_path_for)
        self._rng = rng or random.Random()

    engine = "vllm"
    settings: VllmSettings

    def annotate(self, frames: Sequence[FrameInput], task: str) -> Iterator[PrelabelOutcome]:
        """Yield outcomes as requests complete (any order); one request per frame.

        Image tasks (``ocr``, ``gui_action``, ``spatial``, ``image_to_code``): exactly one outcome
        per input frame, so annotating a subset (e.g. only the frames that failed last time)
        sends exactly that many requests (plus retries).

        ``video_event``: pass all sampled frames of the videos (``FrameInput.t`` set; grouped by
        ``upload_id``). Each video gets exactly ONE outcome, filed under the ``frame_id`` of its
        first sampled frame (see :func:`qwen_dataset.prelabel.video_events.anchor_frames`). A video's frames
        go out in windows of at most ``max_images_per_request`` consecutive frames (vLLM's
        ``--limit-mm-per-prompt``); the windows' events are merged, boundaries aligned to shot
        cuts / audio changes, and the video fails as a whole if any window fails.
        """
        template = self.template(task)
        jobs = plan_jobs(frames, task, self.settings.max_images_per_request)
        collector = VideoCollector(frames) if task == VIDEO_TASK else None
        return self._drive(template, jobs, collector)

    def check_server(self, timeout_s: float = 10.0) -> list[str]:
        """Ask ``/v1/models`` which models the server serves; raise if ours is not among them."""
        url = self.settings.api_root + MODELS_PATH
        try:
            response = httpx.get(url, headers=self._headers(), timeout=timeout_s)
        except httpx.HTTPError as error:
            raise ServerCheckError(
                f"cannot reach the vLLM server at {url}: {error!r}; is `vllm serve` running and QWEN_VLLM_BASE_URL right?"
            ) from error
        if response.status_code != 200:
            raise ServerCheckError(
                f"{url} answered HTTP {response.status_code}: {error_message_of(response)} (check QWEN_VLLM_API_KEY)"
            )
        served = [str(item.get("id")) for item in response.json().get("data", [])]
        if self.settings.model not in served:
            raise ServerCheckError(
                f"the server at {url} serves {served}, not {self.settings.model!r}; set the resource's model to one of them"
            )
        return served

    def check_ready(self) -> None:
        """The start-of-run check: the server answers ``/v1/models`` with our key and serves our model."""
        self.check_server()

    # -- the event loop -----------------------------------------------------------------------

    def _drive(
        self, template: Template, jobs: Iterator[Job], collector: VideoCollector | None
    ) -> Iterator[PrelabelOutcome]:
        settings = self.settings
        threads = settings.encode_threads or min(8, os.cpu_count() or 1)
        loop = asyncio.new_event_loop()
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vllm-encode")
        client = PooledClient(settings, self._headers())
        runner = _Runner(self, template, client, pool, collector)
        pending: set[asyncio.Future[PrelabelOutcome | None]] = set()
        try:
            exhausted = False
            while True:
                while not exhausted and len(pending) < settings.max_concurrency:
                    job = next(jobs, None)
                    if job is None:
                        exhausted = True
                    else:
                        pending.add(loop.create_task(runner.run(job)))
                if not pending:
                    break
                done, pending = loop.run_until_complete(asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED))
                for finished in done:
                    outcome = finished.result()
                    if outcome is not None:
                        yield outcome
        finally:
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(client.aclose())
            loop.close()
            pool.shutdown(wait=True, cancel_futures=True)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.api_key}"}


class _Runner:
    """The coroutines of one ``annotate`` call (single-threaded: they run on its event loop)."""

    def __init__(
        self,
        backend: VllmBackend,
        template: Template,
        client: PooledClient,
        pool: ThreadPoolExecutor,
        collector: VideoCollector | None,
    ) -> None:
        self.backend = backend
        self.settings = backend.settings
        self.template = template
        self.client = client
        self.pool = pool
        self.collector = collector

    async def run(self, job: Job) -> PrelabelOutcome | None:
        """One job -> its outcome (image tasks), or the video's outcome once its last window is in."""
        if self.collector is not None and self.collector.has_failed(job):
            return await self._window_done(job, None)  # the video already failed: don't send the rest
        if job.precheck_error:
            result: dict[str, Any] | PrelabelOutcome = job_failure(job, self.template.task, job.precheck_error, "")
        else:
            try:
                result = await self._exchange(job)
            except Exception as error:  # noqa: BLE001 - one bad answer must never stop the batch
                result = job_failure(job, self.template.task, f"client_error: {type(error).__name__}: {error}", "")
        if self.collector is not None:
            return await self._window_done(job, result)
        if isinstance(result, PrelabelOutcome):
            return result
        return PrelabelOutcome(frame_id=job.outcome_id, task=self.template.task, payload=result)

    async def _window_done(self, job: Job, result: dict[str, Any] | PrelabelOutcome | None) -> PrelabelOutcome | None:
        assert self.collector is not None
        state = self.collector.add(job, result)
        if state is None:
            return None
        boundaries = Boundaries()
        if state.failure is None:
            loop = asyncio.get_running_loop()
            boundaries = await loop.run_in_executor(
                self.pool, video_boundaries, state.frames, self.backend.video_path_for
            )
        return finish_video(state, boundaries, self.settings.event_tolerance_s)

    async def _exchange(self, job: Job) -> dict[str, Any] | PrelabelOutcome:
        task = self.template.task
        settings = self.settings
        loop = asyncio.get_running_loop()
        try:
            images = await loop.run_in_executor(self.pool, self._encode, job.frames)
        except RequestFailed as error:
            return job_failure(job, task, str(error), error.raw)
        placeholders = [image_placeholder(index) for index in range(len(images))]
        instruction = self.backend.instruction_for(job.frames)
        messages = job_messages(job, self.template, placeholders, instruction)
        budget = token_budget(self.template, settings.max_tokens)
        body = encode_request(build_request_body(settings.model, self.template, messages, budget), placeholders, images)
        del images, messages
        context = job_context(job, instruction)
        second_chance = True  # an unusable (not truncated) answer is asked for once more
        while True:
            try:
                text, finish_reason = await self._post(body)
            except RequestFailed as error:
                return job_failure(job, task, str(error), error.raw)
            try:
                return parse_answer(self.template, text, context)
            except AnswerError as error:
                if finish_reason == "length":
                    # At temperature 0 the same budget truncates the same way: more tokens, or stop.
                    grown = next_budget(budget, settings.retry_max_tokens)
                    if grown is None:
                        return job_failure(job, task, truncation_error(error, budget), text)
                    budget, body = grown, with_budget(body, grown)
                elif second_chance:
                    second_chance = False
                else:
                    return job_failure(job, task, str(error), text)

    def _encode(self, frames: Sequence[FrameInput]) -> list[EncodedImage]:
        settings = self.settings
        return [encode_image(frame.image_path, settings.max_pixels, settings.reencode_format) for frame in frames]

    async def _post(self, body: bytes) -> tuple[str, str]:
        """POST with retries on connection errors, timeouts, 429 and 5xx; -> (content, finish_reason)."""
        settings = self.settings
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                async with asyncio.timeout(settings.request_timeout_s):
                    response = await self.client.post(CHAT_PATH, body)
            except (TimeoutError, httpx.TimeoutException):
                code, reason, raw = "timeout", f"no answer within {settings.request_timeout_s:g} s", ""
            except httpx.TransportError as error:
                code, reason, raw = "connection_error", f"{type(error).__name__}: {error}", ""
            else:
                if response.status_code == 200:
                    return completion_content(response)
                code, reason, raw = (
                    f"http_{response.status_code}",
                    error_message_of(response),
                    response.text[:RAW_LIMIT],
                )
                if not (response.status_code == 429 or response.status_code >= 500):
                    raise RequestFailed(code, reason, raw)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if attempt >= settings.max_retries:
                raise RequestFailed(code, f"{reason} (gave up after {attempt + 1} attempts)", raw)
            await asyncio.sleep(self._delay(attempt, retry_after))
            attempt += 1

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        settings = self.settings
        if retry_after is not None:
            return min(retry_after, max(settings.backoff_max_s, RETRY_AFTER_FLOOR_CAP_S))
        return full_jitter_delay(attempt, settings.backoff_base_s, settings.backoff_max_s, self.backend._rng)
