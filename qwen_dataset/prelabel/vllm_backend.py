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
import base64
import copy
import dataclasses
import email.utils
import hashlib
import io
import json
import math
import os
import random
import ssl
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
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
#: 2048 visual tokens per image: 1920x1080 frames go out untouched (no decode/re-encode on the
#: client), and 8 video frames plus the answer still fit a 32k context.
DEFAULT_MAX_PIXELS = 2048 * PIXELS_PER_VISUAL_TOKEN
#: The recommended ``vllm serve --limit-mm-per-prompt '{"image": 8}'``.
DEFAULT_MAX_IMAGES_PER_REQUEST = 8
VIDEO_TASK = "video_event"
CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
RAW_LIMIT = 4000  # characters of an error body or answer kept on a failure row
# httpcore schedules each pool's requests in time quadratic in its connections: 64 connections in
# one pool cost ~2x the client CPU of 8 pools of 8 (benchmarks/bench_vllm_client.py).
CONNECTIONS_PER_POOL = 8
_RETRY_AFTER_FLOOR_CAP_S = 60.0
REENCODE_FORMATS = {"png": ("PNG", "image/png", {"compress_level": 1}), "jpeg": ("JPEG", "image/jpeg", {"quality": 95})}


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
    encode_threads: int = 0  # 0: min(8, CPU count); image decode/resize/encode release the GIL
    reencode_format: str = "png"  # for frames that must be re-encoded (downscaled): "png" (lossless) or "jpeg" (q95, far less CPU)

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
        if self.reencode_format not in REENCODE_FORMATS:
            raise ValueError(f"reencode_format must be one of {sorted(REENCODE_FORMATS)}, not {self.reencode_format!r}")
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
    url_bytes: bytes  # b"data:image/png;base64,..." (ASCII)
    width: int  # the size sent, after any downscaling
    height: int

    @property
    def data_url(self) -> str:
        return self.url_bytes.decode("ascii")


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


def encode_image(path: Path, max_pixels: int, reencode_format: str = "png") -> EncodedImage:
    """A ``data:`` URL for the frame, downscaled to ``max_pixels`` (aspect kept, never upscaled).

    A PNG or JPEG already within budget is sent byte for byte; anything else is re-encoded as
    ``reencode_format`` (PNG by default: lossless, at some CPU cost).
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
                    # Bicubic, as Qwen's own processor resizes; a third cheaper than Lanczos.
                    picture = picture.resize(target, Image.Resampling.BICUBIC, reducing_gap=3.0)
                pil_format, mime, options = REENCODE_FORMATS[reencode_format]
                buffer = io.BytesIO()
                picture.save(buffer, format=pil_format, **options)
                data = buffer.getvalue()
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        raise RequestFailed("image_unreadable", f"{path}: {error}") from error
    return EncodedImage(b"data:" + mime.encode() + b";base64," + base64.b64encode(data), target[0], target[1])


# --------------------------------------------------------------------------------------------
# Requests and answers


def timestamp_marker(t: float) -> str:
    """The text Qwen3-VL reads before a video frame: ``<1.0 seconds>``."""
    return f"<{t:.1f} seconds>"


def build_messages(
    template: Template,
    image_urls: Sequence[str],
    *,
    instruction: str,
    timestamps: Sequence[float] | None = None,
) -> list[dict[str, Any]]:
    """OpenAI chat messages: optional system prompt, then the image(s) and the prompt.

    For video, each image is preceded by its ``<t seconds>`` marker.
    """
    content: list[dict[str, Any]] = []
    for index, url in enumerate(image_urls):
        if timestamps is not None:
            content.append({"type": "text", "text": timestamp_marker(timestamps[index])})
        content.append({"type": "image_url", "image_url": {"url": url}})
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


def image_placeholder(index: int) -> str:
    """A stand-in URL for :func:`encode_request`; its NUL characters never occur in prompts."""
    return f"\x00image-{index}\x00"


def encode_request(body: dict[str, Any], placeholders: Sequence[str], images: Sequence[EncodedImage]) -> bytes:
    """JSON bytes of ``body`` with each placeholder URL replaced by its image's data URL.

    Base64 needs no JSON escaping, so the (megabyte-sized) data URLs are spliced in as raw bytes
    instead of going through ``json.dumps``, which would cost ~4 ms of CPU per megabyte.
    """
    text = json.dumps(body, ensure_ascii=False).encode("utf-8")
    pieces: list[bytes] = []
    for placeholder, image in zip(placeholders, images):
        marker = json.dumps(placeholder).encode("ascii")
        if text.count(marker) != 1:
            raise ValueError(f"the request must hold the placeholder {placeholder!r} exactly once")
        head, text = text.split(marker, 1)
        pieces += [head, b'"', image.url_bytes, b'"']
    pieces.append(text)
    return b"".join(pieces)


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
# Jobs: one request each (shared with the in-process mode)


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
        if any(frame.t is None for frame in members):
            yield Job(anchor, 0, 1, tuple(members), precheck_error="no_timestamps: video_event needs each sampled frame's time t; these frames have none")
            continue
        times = [float(frame.t) for frame in members]  # type: ignore[arg-type]
        steps = [later - earlier for earlier, later in zip(times, times[1:]) if later > earlier]
        slack = statistics.median(steps) if steps else 1.0
        windows = [tuple(members[start : start + max_images_per_request]) for start in range(0, len(members), max_images_per_request)]
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
class _VideoState:
    frames: list[FrameInput]
    received: int = 0
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    failure: PrelabelOutcome | None = None


class VideoCollector:
    """Gathers the windows of each video; a video is complete when all its windows are in."""

    def __init__(self, frames: Sequence[FrameInput]) -> None:
        self.states = {members[0].frame_id: _VideoState(frames=members) for members in group_video_frames(frames).values()}

    def has_failed(self, job: Job) -> bool:
        return self.states[job.outcome_id].failure is not None

    def add(self, job: Job, result: dict[str, Any] | PrelabelOutcome | None) -> _VideoState | None:
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
        cuts = cuts_from_sampled_frames([frame.image_path for frame in members], [float(frame.t or 0.0) for frame in members])
    except (OSError, ValueError):
        return Boundaries()
    return Boundaries(cuts=tuple(cuts), source="sampled_frames")


def finish_video(state: _VideoState, boundaries: Boundaries, tolerance_s: float) -> PrelabelOutcome:
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


def backend_version(engine: str, model: str, templates: dict[str, Template], **parameters: Any) -> str:
    """The version string: engine, model, every template's version tag and output-relevant parameters."""
    parts = [f"{engine}:{model}", *(f"{name}={value}" for name, value in parameters.items() if value is not None)]
    parts.extend(f"{task}={template.version_tag}" for task, template in templates.items())
    return ";".join(parts)


def instruction_digest(instruction: str) -> str | None:
    """A short hash of a non-default GUI instruction (it changes gui_action output)."""
    if instruction == DEFAULT_GUI_INSTRUCTION:
        return None
    return hashlib.sha256(instruction.encode()).hexdigest()[:8]


# --------------------------------------------------------------------------------------------
# The backend


def qwen_backend_version(engine: str, settings: Any, templates: dict[str, Template]) -> str:
    """The version of a Qwen3-VL backend (served or in-process): model, templates, and the settings
    that change its output. ``settings`` has the fields of :class:`VllmSettings` that matter here."""
    has_video = VIDEO_TASK in templates
    return backend_version(
        engine,
        settings.model,
        templates,
        max_pixels=settings.max_pixels,
        max_tokens=settings.max_tokens,
        reencode=settings.reencode_format,
        video_window=settings.max_images_per_request if has_video else None,
        tolerance=f"{settings.event_tolerance_s:g}" if has_video else None,
        instruction=instruction_digest(settings.gui_instruction) if "gui_action" in templates else None,
    )


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
        return qwen_backend_version("vllm", self.settings, self.templates)

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
        jobs = plan_jobs(frames, task, self.settings.max_images_per_request)
        collector = VideoCollector(frames) if task == VIDEO_TASK else None
        return self._drive(template, jobs, collector)

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
        clone = copy.copy(self)
        if instruction:
            clone.settings = dataclasses.replace(self.settings, gui_instruction=instruction)
        if video_path_for is not None:
            clone.video_path_for = video_path_for
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

    # -- the event loop -----------------------------------------------------------------------

    def _drive(self, template: Template, jobs: Iterator[Job], collector: VideoCollector | None) -> Iterator[PrelabelOutcome]:
        settings = self.settings
        threads = settings.encode_threads or min(8, os.cpu_count() or 1)
        loop = asyncio.new_event_loop()
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vllm-encode")
        client = _PooledClient(settings, self._headers())
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


class _PooledClient:
    """``max_concurrency`` keep-alive connections split over small ``httpx.AsyncClient`` pools.

    Each POST goes to the least busy pool, so the pools together keep every slot in use.
    """

    def __init__(self, settings: VllmSettings, headers: dict[str, str]) -> None:
        count = math.ceil(settings.max_concurrency / CONNECTIONS_PER_POOL)
        size = math.ceil(settings.max_concurrency / count)
        self.clients = [
            httpx.AsyncClient(
                base_url=settings.api_root,
                headers=headers,
                verify=_tls_context(),
                timeout=httpx.Timeout(settings.request_timeout_s, connect=min(settings.request_timeout_s, 10.0)),
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
            )
            for _ in range(count)
        ]
        self.busy = [0] * count

    async def post(self, path: str, body: bytes) -> httpx.Response:
        index = min(range(len(self.clients)), key=self.busy.__getitem__)
        self.busy[index] += 1
        try:
            return await self.clients[index].post(path, content=body, headers={"Content-Type": "application/json"})
        finally:
            self.busy[index] -= 1

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


@lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    # httpx's default context (certifi, or SSL_CERT_FILE): loading the CA bundle costs ~25 ms,
    # so build it once rather than once per pool.
    return httpx.create_ssl_context()


class _Runner:
    """The coroutines of one ``annotate`` call (single-threaded: they run on its event loop)."""

    def __init__(
        self,
        backend: VllmBackend,
        template: Template,
        client: _PooledClient,
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
            boundaries = await loop.run_in_executor(self.pool, video_boundaries, state.frames, self.backend.video_path_for)
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
        messages = job_messages(job, self.template, placeholders, settings.gui_instruction)
        body = encode_request(build_request_body(settings.model, self.template, messages, settings.max_tokens), placeholders, images)
        del images, messages
        context = job_context(job, settings.gui_instruction)
        last_error, last_raw = "", ""
        for _ in range(2):  # an unusable answer is asked for once more
            try:
                text, finish_reason = await self._post(body)
            except RequestFailed as error:
                return job_failure(job, task, str(error), error.raw)
            try:
                return parse_answer(self.template, text, context)
            except AnswerError as error:
                last_raw = text
                last_error = truncation_error(error, min(self.template.max_tokens, settings.max_tokens)) if finish_reason == "length" else str(error)
        return job_failure(job, task, last_error, last_raw)

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
