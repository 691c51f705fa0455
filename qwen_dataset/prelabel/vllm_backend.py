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
``max_concurrency`` requests in flight over one pooled ``httpx.AsyncClient``; images are read,
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
import base64
import dataclasses
import email.utils
import hashlib
import io
import json
import math
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, UnidentifiedImageError

from qwen_dataset.prelabel.base import FrameInput, PrelabelOutcome
from qwen_dataset.prelabel.templates import (
    DEFAULT_GUI_INSTRUCTION,
    AnswerContext,
    AnswerError,
    Template,
    load_templates,
    parse_answer,
)
from qwen_dataset.video_events import (
    DEFAULT_TOLERANCE_S,
    Boundaries,
    cuts_from_sampled_frames,
    event_payload,
    group_video_frames,
    scan_video,
)

DEFAULT_MODEL = "Qwen/Qwen3-VL-4B-Instruct"
#: Qwen3-VL sees one visual token per 32x32 pixels (16 px patches merged 2x2).
PIXELS_PER_VISUAL_TOKEN = 32 * 32
#: 1280 visual tokens per image: leaves room for 8 video frames in a 32k context.
DEFAULT_MAX_PIXELS = 1280 * PIXELS_PER_VISUAL_TOKEN
#: The recommended ``vllm serve --limit-mm-per-prompt '{"image": 8}'``.
DEFAULT_MAX_IMAGES_PER_REQUEST = 8
VIDEO_TASK = "video_event"
CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
RAW_LIMIT = 4000  # characters of an error body or answer kept on a failure row
_RETRY_AFTER_FLOOR_CAP_S = 60.0


class RequestFailed(Exception):
    """A request that produced no usable answer (after its retries)."""

    def __init__(self, code: str, reason: str, raw: str = "") -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.raw = raw


class ServerCheckError(RuntimeError):
    """The vLLM server is unreachable or does not serve the configured model."""


@dataclasses.dataclass(frozen=True)
class VllmSettings:
    """Everything the backend needs; the Dagster resource is a thin wrapper around this."""

    base_url: str
    api_key: str = "EMPTY"
    model: str = DEFAULT_MODEL
    max_concurrency: int = 64
    request_timeout_s: float = 120.0
    max_retries: int = 4
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_tokens: int = 4096
    max_pixels: int = DEFAULT_MAX_PIXELS
    tasks: tuple[str, ...] | None = None  # None: every template present
    gui_instruction: str = DEFAULT_GUI_INSTRUCTION
    max_images_per_request: int = DEFAULT_MAX_IMAGES_PER_REQUEST
    event_tolerance_s: float = DEFAULT_TOLERANCE_S
    templates_dir: str = ""  # empty: the packaged templates
    encode_threads: int = 0  # 0: min(4, CPU count)

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"base_url {self.base_url!r} must be an http(s) URL such as http://gpu-host:8000 "
                "(set QWEN_VLLM_BASE_URL)"
            )
        positive = {
            "max_concurrency": self.max_concurrency,
            "request_timeout_s": self.request_timeout_s,
            "max_tokens": self.max_tokens,
            "max_pixels": self.max_pixels,
            "max_images_per_request": self.max_images_per_request,
        }
        bad = {name: value for name, value in positive.items() if not value > 0}
        if bad:
            raise ValueError(f"these settings must be positive: {bad}")
        if self.max_retries < 0 or self.backoff_base_s < 0 or self.backoff_max_s < 0 or self.event_tolerance_s < 0:
            raise ValueError("max_retries, backoff_base_s, backoff_max_s and event_tolerance_s must not be negative")

    @property
    def api_root(self) -> str:
        """The server root: ``http://host:8000`` (a trailing ``/v1`` given by habit is dropped)."""
        root = self.base_url.rstrip("/")
        return root[: -len("/v1")] if root.endswith("/v1") else root


# --------------------------------------------------------------------------------------------
# Images


@dataclasses.dataclass(frozen=True)
class EncodedImage:
    data_url: str
    width: int  # the size sent, after any downscaling
    height: int


def fit_within_pixels(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The largest size with the same aspect ratio and at most ``max_pixels``; never upscales.

    >>> fit_within_pixels(3840, 2160, 1280 * 1024)
    (1526, 858)
    >>> fit_within_pixels(640, 480, 1280 * 1024)
    (640, 480)
    """
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def encode_image(path: Path, max_pixels: int) -> EncodedImage:
    """A ``data:`` URL for the frame, downscaled to ``max_pixels`` (aspect kept, never upscaled).

    A PNG or JPEG already within budget is sent byte for byte; anything else is re-encoded as PNG.
    Raises :class:`RequestFailed` ``image_unreadable`` when the file cannot be decoded.
    """
    try:
        with Image.open(path) as image:
            size = image.size
            target = fit_within_pixels(*size, max_pixels)
            if target == size and image.format in ("PNG", "JPEG"):
                mime = "image/png" if image.format == "PNG" else "image/jpeg"
                data = Path(path).read_bytes()
            else:
                if image.format == "JPEG":
                    image.draft("RGB", target)  # decode at a reduced scale first: much less work
                picture = image if image.mode in ("RGB", "L") else image.convert("RGB")
                if picture.size != target:
                    picture = picture.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
                buffer = io.BytesIO()
                picture.save(buffer, format="PNG", compress_level=1)
                mime, data = "image/png", buffer.getvalue()
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        raise RequestFailed("image_unreadable", f"{path}: {error}") from error
    return EncodedImage(f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}", target[0], target[1])


# --------------------------------------------------------------------------------------------
# Requests and answers


def timestamp_marker(t: float) -> str:
    """The text Qwen3-VL reads before a video frame: ``<1.0 seconds>``."""
    return f"<{t:.1f} seconds>"


def build_messages(
    template: Template,
    images: Sequence[EncodedImage],
    *,
    instruction: str,
    timestamps: Sequence[float] | None = None,
) -> list[dict[str, Any]]:
    """OpenAI chat messages: optional system prompt, then the image(s) and the prompt.

    For video, each image is preceded by its ``<t seconds>`` marker.
    """
    content: list[dict[str, Any]] = []
    for index, image in enumerate(images):
        if timestamps is not None:
            content.append({"type": "text", "text": timestamp_marker(timestamps[index])})
        content.append({"type": "image_url", "image_url": {"url": image.data_url}})
    content.append({"type": "text", "text": template.render_prompt(instruction)})
    messages: list[dict[str, Any]] = []
    if template.system:
        messages.append({"role": "system", "content": template.system})
    messages.append({"role": "user", "content": content})
    return messages


def build_request_body(
    model: str, template: Template, messages: list[dict[str, Any]], max_tokens: int
) -> dict[str, Any]:
    """The chat-completions body with vLLM's ``response_format`` structured output."""
    return {
        "model": model,
        "messages": messages,
        "max_tokens": min(template.max_tokens, max_tokens),
        "temperature": 0,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": template.task, "schema": template.schema, "strict": True},
        },
    }


def full_jitter_delay(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """AWS-style full jitter: uniform in ``[0, min(max_s, base_s * 2**attempt)]``."""
    return rng.uniform(0.0, min(max_s, base_s * (2**attempt)))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_message_of(response: httpx.Response) -> str:
    """vLLM's error text: ``{"error": {"message"}}`` (current) or ``{"message"}`` (older)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300].strip() or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
        if body.get("message"):
            return str(body["message"])[:500]
    return response.text[:300]


def completion_content(response: httpx.Response) -> tuple[str, str]:
    """``(content, finish_reason)`` of a chat completion; :class:`RequestFailed` if malformed."""
    try:
        body = response.json()
        choice = body["choices"][0]
        content = choice["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise RequestFailed("bad_response", f"the server's answer is not a chat completion ({error!r})", response.text[:RAW_LIMIT]) from error
    if not content:
        raise RequestFailed("empty_response", "the model returned no content", "")
    return str(content), str(choice.get("finish_reason") or "")


# --------------------------------------------------------------------------------------------
# Jobs: one request each


@dataclasses.dataclass(frozen=True)
class _Job:
    outcome_id: str  # frame id the outcome is filed under (a video's first sampled frame)
    window: int  # this request's index among its outcome's requests
    windows: int
    frames: tuple[FrameInput, ...]
    slack_s: float = 0.0  # video: how far past the shown timestamps an event may reach
    precheck_error: str = ""


@dataclasses.dataclass
class _VideoState:
    frames: list[FrameInput]
    received: int = 0
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    failure: PrelabelOutcome | None = None


class VllmBackend:
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
        self.settings = settings
        self.templates: dict[str, Template] = load_templates(settings.tasks, settings.templates_dir or None)
        self.video_path_for = video_path_for
        self._rng = rng or random.Random()

    # -- PrelabelBackend ----------------------------------------------------------------------

    @property
    def author(self) -> str:
        return self.settings.model

    @property
    def version(self) -> str:
        """Model, template versions and every parameter that changes the output; no network."""
        settings = self.settings
        parts = [
            f"vllm:{settings.model}",
            f"max_pixels={settings.max_pixels}",
            f"max_tokens={settings.max_tokens}",
            *(f"{task}={template.version_tag}" for task, template in self.templates.items()),
        ]
        if VIDEO_TASK in self.templates:
            parts.append(f"video_window={settings.max_images_per_request},tolerance={settings.event_tolerance_s:g}")
        if "gui_action" in self.templates and settings.gui_instruction != DEFAULT_GUI_INSTRUCTION:
            digest = hashlib.sha256(settings.gui_instruction.encode()).hexdigest()[:8]
            parts.append(f"instruction={digest}")
        return ";".join(parts)

    @property
    def tasks(self) -> Sequence[str]:
        return tuple(self.templates)

    def annotate(self, frames: Sequence[FrameInput], task: str) -> Iterator[PrelabelOutcome]:
        """Yield outcomes as requests complete (any order); one request per frame.

        Image tasks (``ocr``, ``gui_action``, ``spatial``, ``image_to_code``): exactly one outcome
        per input frame, so annotating a subset (e.g. only the frames that failed last time)
        sends exactly that many requests (plus retries).

        ``video_event``: pass all sampled frames of the videos (``FrameInput.t`` set; grouped by
        ``upload_id``). Each video gets exactly ONE outcome, filed under the ``frame_id`` of its
        first sampled frame (see :func:`qwen_dataset.video_events.anchor_frames`). A video's frames
        go out in windows of at most ``max_images_per_request`` consecutive frames (vLLM's
        ``--limit-mm-per-prompt``); the windows' events are merged, boundaries aligned to shot
        cuts / audio changes, and the video fails as a whole if any window fails.
        """
        template = self.template(task)
        jobs = self._video_jobs(frames) if task == VIDEO_TASK else self._frame_jobs(frames)
        return self._drive(template, jobs, frames if task == VIDEO_TASK else ())

    # -- extras -------------------------------------------------------------------------------

    def template(self, task: str) -> Template:
        try:
            return self.templates[task]
        except KeyError:
            raise ValueError(f"the vLLM backend is not configured for task {task!r}; it runs {list(self.templates)}") from None

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
    ) -> VllmBackend:
        """A copy with per-run options (e.g. the GUI instruction from the run config)."""
        settings = self.settings
        if instruction:
            settings = dataclasses.replace(settings, gui_instruction=instruction)
        clone = VllmBackend.__new__(VllmBackend)
        clone.settings = settings
        clone.templates = self.templates
        clone.video_path_for = video_path_for or self.video_path_for
        clone._rng = self._rng
        return clone

    def check_server(self, timeout_s: float = 10.0) -> list[str]:
        """Ask ``/v1/models`` which models the server serves; raise if ours is not among them."""
        url = self.settings.api_root + MODELS_PATH
        try:
            response = httpx.get(url, headers=self._headers(), timeout=timeout_s)
        except httpx.HTTPError as error:
            raise ServerCheckError(f"cannot reach the vLLM server at {url}: {error!r}; is `vllm serve` running and QWEN_VLLM_BASE_URL right?") from error
        if response.status_code != 200:
            raise ServerCheckError(f"{url} answered HTTP {response.status_code}: {error_message_of(response)} (check QWEN_VLLM_API_KEY)")
        served = [str(item.get("id")) for item in response.json().get("data", [])]
        if self.settings.model not in served:
            raise ServerCheckError(f"the server at {url} serves {served}, not {self.settings.model!r}; set the resource's model to one of them")
        return served

    # -- planning -----------------------------------------------------------------------------

    def _frame_jobs(self, frames: Sequence[FrameInput]) -> Iterator[_Job]:
        for frame in frames:
            yield _Job(outcome_id=frame.frame_id, window=0, windows=1, frames=(frame,))

    def _video_jobs(self, frames: Sequence[FrameInput]) -> Iterator[_Job]:
        size = self.settings.max_images_per_request
        for members in group_video_frames(frames).values():
            anchor = members[0].frame_id
            if any(frame.t is None for frame in members):
                yield _Job(anchor, 0, 1, tuple(members), precheck_error="no_timestamps: video_event needs each sampled frame's time t; these frames have none")
                continue
            times = [float(frame.t) for frame in members]  # type: ignore[arg-type]
            steps = [b - a for a, b in zip(times, times[1:]) if b > a]
            slack = statistics.median(steps) if steps else 1.0
            windows = [tuple(members[start : start + size]) for start in range(0, len(members), size)]
            for index, window in enumerate(windows):
                yield _Job(anchor, index, len(windows), window, slack_s=slack)

    # -- the event loop -----------------------------------------------------------------------

    def _drive(self, template: Template, jobs: Iterator[_Job], video_frames: Sequence[FrameInput]) -> Iterator[PrelabelOutcome]:
        settings = self.settings
        video_states = {anchor: _VideoState(frames=members) for anchor, members in _anchored(video_frames).items()}
        threads = settings.encode_threads or min(4, os.cpu_count() or 1)
        loop = asyncio.new_event_loop()
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vllm-encode")
        client = httpx.AsyncClient(
            base_url=settings.api_root,
            headers=self._headers(),
            timeout=httpx.Timeout(settings.request_timeout_s, connect=min(settings.request_timeout_s, 10.0)),
            limits=httpx.Limits(max_connections=settings.max_concurrency, max_keepalive_connections=settings.max_concurrency),
        )
        runner = _Runner(self, template, client, pool, video_states)
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

    def _boundaries(self, members: Sequence[FrameInput]) -> Boundaries:
        """Anchors for event alignment: a full scan of the video when we know its file."""
        if self.video_path_for is not None:
            path = self.video_path_for(members[0].upload_id)
            if path is not None and Path(path).is_file():
                try:
                    return scan_video(Path(path))
                except (OSError, ValueError) as error:  # fall back to the sampled frames
                    del error
        try:
            cuts = cuts_from_sampled_frames([frame.image_path for frame in members], [float(frame.t or 0.0) for frame in members])
        except (OSError, ValueError):
            return Boundaries()
        return Boundaries(cuts=tuple(cuts), source="sampled_frames")


def _anchored(frames: Sequence[FrameInput]) -> dict[str, list[FrameInput]]:
    return {members[0].frame_id: members for members in group_video_frames(frames).values()}


class _Runner:
    """The coroutines of one ``annotate`` call (single-threaded: they run on its event loop)."""

    def __init__(
        self,
        backend: VllmBackend,
        template: Template,
        client: httpx.AsyncClient,
        pool: ThreadPoolExecutor,
        video_states: dict[str, _VideoState],
    ) -> None:
        self.backend = backend
        self.settings = backend.settings
        self.template = template
        self.client = client
        self.pool = pool
        self.video_states = video_states

    async def run(self, job: _Job) -> PrelabelOutcome | None:
        """One job -> its outcome (image tasks), or the video's outcome once its last window is in."""
        state = self.video_states.get(job.outcome_id) if self.template.task == VIDEO_TASK else None
        if state is not None and state.failure is not None:
            return await self._video_window_done(job, state, None)  # the video already failed: skip
        if job.precheck_error:
            result: dict[str, Any] | PrelabelOutcome = self._failure(job, job.precheck_error, "")
        else:
            try:
                result = await self._exchange(job)
            except Exception as error:  # noqa: BLE001 - one bad answer must never stop the batch
                result = self._failure(job, f"client_error: {type(error).__name__}: {error}", "")
        if state is None:
            if isinstance(result, PrelabelOutcome):
                return result
            return PrelabelOutcome(frame_id=job.outcome_id, task=self.template.task, payload=result)
        return await self._video_window_done(job, state, result)

    async def _exchange(self, job: _Job) -> dict[str, Any] | PrelabelOutcome:
        loop = asyncio.get_running_loop()
        try:
            images = await loop.run_in_executor(self.pool, self._encode, job.frames)
        except RequestFailed as error:
            return self._failure(job, str(error), error.raw)
        body = json.dumps(self._body(job, images), ensure_ascii=False).encode("utf-8")
        del images
        context = self._context(job)
        last_error, last_raw = "", ""
        for _ in range(2):  # an unusable answer is asked for once more
            try:
                text, finish_reason = await self._post(body)
            except RequestFailed as error:
                return self._failure(job, str(error), error.raw)
            try:
                return parse_answer(self.template, text, context)
            except AnswerError as error:
                last_error, last_raw = str(error), text
                if finish_reason == "length":
                    max_tokens = min(self.template.max_tokens, self.settings.max_tokens)
                    last_error = f"truncated: the answer hit max_tokens={max_tokens} before it was complete ({error})"
        return self._failure(job, last_error, last_raw)

    def _encode(self, frames: Sequence[FrameInput]) -> list[EncodedImage]:
        return [encode_image(frame.image_path, self.settings.max_pixels) for frame in frames]

    def _body(self, job: _Job, images: Sequence[EncodedImage]) -> dict[str, Any]:
        timestamps = [float(frame.t or 0.0) for frame in job.frames] if self.template.task == VIDEO_TASK else None
        messages = build_messages(self.template, images, instruction=self.settings.gui_instruction, timestamps=timestamps)
        return build_request_body(self.settings.model, self.template, messages, self.settings.max_tokens)

    def _context(self, job: _Job) -> AnswerContext:
        first = job.frames[0]
        times = [float(frame.t or 0.0) for frame in job.frames]
        return AnswerContext(
            width=first.width,
            height=first.height,
            instruction=self.settings.gui_instruction,
            window_start=min(times),
            window_end=max(times),
            window_slack=job.slack_s,
        )

    async def _post(self, body: bytes) -> tuple[str, str]:
        """POST with retries on connection errors, timeouts, 429 and 5xx; -> (content, finish_reason)."""
        settings = self.settings
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                async with asyncio.timeout(settings.request_timeout_s):
                    response = await self.client.post(CHAT_PATH, content=body, headers={"Content-Type": "application/json"})
            except (TimeoutError, httpx.TimeoutException):
                code, reason, raw = "timeout", f"no answer within {settings.request_timeout_s:g} s", ""
            except httpx.TransportError as error:
                code, reason, raw = "connection_error", f"{type(error).__name__}: {error}", ""
            else:
                if response.status_code == 200:
                    return completion_content(response)
                code, reason, raw = f"http_{response.status_code}", error_message_of(response), response.text[:RAW_LIMIT]
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
            return min(retry_after, max(settings.backoff_max_s, _RETRY_AFTER_FLOOR_CAP_S))
        return full_jitter_delay(attempt, settings.backoff_base_s, settings.backoff_max_s, self.backend._rng)

    def _failure(self, job: _Job, error: str, raw: str) -> PrelabelOutcome:
        if job.windows > 1:
            first, last = job.frames[0].t or 0.0, job.frames[-1].t or 0.0
            error = f"window {job.window + 1}/{job.windows} ({first:.1f}-{last:.1f} s): {error}"
        return PrelabelOutcome(frame_id=job.outcome_id, task=self.template.task, payload=None, error=error, raw=raw[:RAW_LIMIT])

    async def _video_window_done(
        self, job: _Job, state: _VideoState, result: dict[str, Any] | PrelabelOutcome | None
    ) -> PrelabelOutcome | None:
        state.received += 1
        if isinstance(result, PrelabelOutcome) and state.failure is None:
            state.failure = result
        elif isinstance(result, dict):
            state.events.extend(result["events"])
        if state.received < job.windows:
            return None
        if state.failure is not None:
            return state.failure
        loop = asyncio.get_running_loop()
        boundaries = await loop.run_in_executor(self.pool, self.backend._boundaries, state.frames)
        payload = event_payload(
            state.events,
            boundaries,
            [float(frame.t or 0.0) for frame in state.frames],
            [frame.frame_id for frame in state.frames],
            tolerance=self.settings.event_tolerance_s,
        )
        return PrelabelOutcome(frame_id=job.outcome_id, task=VIDEO_TASK, payload=payload)
