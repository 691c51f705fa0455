"""Settings of the Qwen3-VL backends (served and in-process) and the version string derived from them:
model, template versions and every parameter that changes the output.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from qwen_dataset.prelabel.templates import (
    DEFAULT_GUI_INSTRUCTION,
    Template,
)
from qwen_dataset.prelabel.video_events import (
    DEFAULT_TOLERANCE_S,
)

DEFAULT_MODEL = "Qwen/Qwen3-VL-4B-Instruct"

#: The cap on a request's answer tokens. A request's budget is its template's ``max_tokens``
#: (image_to_code 8192, the others 4096), never more than this cap: the default holds every
#: packaged template's budget, so the template's number is what is sent; a lower cap lowers them all.
DEFAULT_MAX_TOKENS = 8192
#: A truncated answer (``finish_reason=length``) is asked again with twice the budget, up to this
#: many tokens; at the ceiling it fails at once (asking again with the same budget truncates the
#: same way at temperature 0). 0: never ask again. The server's ``max_model_len`` must hold the
#: prompt, the images and this many answer tokens.
DEFAULT_RETRY_MAX_TOKENS = 16384

#: Qwen3-VL sees one visual token per 32x32 pixels (16 px patches merged 2x2).
PIXELS_PER_VISUAL_TOKEN = 32 * 32

#: 2048 visual tokens per image: 1920x1080 frames go out untouched (no decode/re-encode on the
#: client), and 8 video frames plus the answer still fit a 32k context.
DEFAULT_MAX_PIXELS = 2048 * PIXELS_PER_VISUAL_TOKEN

#: The recommended ``vllm serve --limit-mm-per-prompt '{"image": 8}'``.
DEFAULT_MAX_IMAGES_PER_REQUEST = 8
VIDEO_TASK = "video_event"
REENCODE_FORMATS = {"png": ("PNG", "image/png", {"compress_level": 1}), "jpeg": ("JPEG", "image/jpeg", {"quality": 95})}


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
    max_tokens: int = DEFAULT_MAX_TOKENS
    retry_max_tokens: int = DEFAULT_RETRY_MAX_TOKENS
    max_pixels: int = DEFAULT_MAX_PIXELS
    tasks: tuple[str, ...] | None = None  # None: every template present
    gui_instruction: str = DEFAULT_GUI_INSTRUCTION
    max_images_per_request: int = DEFAULT_MAX_IMAGES_PER_REQUEST
    event_tolerance_s: float = DEFAULT_TOLERANCE_S
    templates_dir: str = ""  # empty: the packaged templates
    encode_threads: int = 0  # 0: min(8, CPU count); image decode/resize/encode release the GIL
    reencode_format: str = (
        "png"  # for frames that must be re-encoded (downscaled): "png" (lossless) or "jpeg" (q95, far less CPU)
    )

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
        if self.retry_max_tokens < 0:
            raise ValueError(f"retry_max_tokens must be 0 (never ask again) or positive, not {self.retry_max_tokens}")
        if self.max_retries < 0 or self.backoff_base_s < 0 or self.backoff_max_s < 0 or self.event_tolerance_s < 0:
            raise ValueError("max_retries, backoff_base_s, backoff_max_s and event_tolerance_s must not be negative")

    @property
    def api_root(self) -> str:
        """The server root: ``http://host:8000`` (a trailing ``/v1`` given by habit is dropped)."""
        root = self.base_url.rstrip("/")
        return root[: -len("/v1")] if root.endswith("/v1") else root


@dataclasses.dataclass(frozen=True)
class InProcessSettings:
    model: str = DEFAULT_MODEL
    max_tokens: int = DEFAULT_MAX_TOKENS
    retry_max_tokens: int = DEFAULT_RETRY_MAX_TOKENS
    max_pixels: int = DEFAULT_MAX_PIXELS
    tasks: tuple[str, ...] | None = None
    gui_instruction: str = DEFAULT_GUI_INSTRUCTION
    max_images_per_request: int = DEFAULT_MAX_IMAGES_PER_REQUEST
    event_tolerance_s: float = DEFAULT_TOLERANCE_S
    templates_dir: str = ""
    reencode_format: str = "png"
    batch_size: int = 256
    # Passed to vllm.LLM; the defaults mirror the recommended `vllm serve` command.
    engine_args: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {
            "max_model_len": 32768,
            "limit_mm_per_prompt": {"image": DEFAULT_MAX_IMAGES_PER_REQUEST, "video": 0},
        }
    )


def token_budget(template: Template, cap: int) -> int:
    """The answer tokens a request of ``template`` asks for: the template's budget, at most ``cap``."""
    return min(template.max_tokens, cap)


def next_budget(budget: int, retry_max_tokens: int) -> int | None:
    """The budget to ask again with after a truncated answer: twice as many tokens, at most
    ``retry_max_tokens``; None when the budget is already there (fail at once).

    >>> next_budget(4096, 16384), next_budget(16384, 16384), next_budget(4096, 0)
    (8192, None, None)
    """
    grown = min(2 * budget, retry_max_tokens)
    return grown if grown > budget else None


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
        retry_tokens=settings.retry_max_tokens,
        reencode=settings.reencode_format,
        video_window=settings.max_images_per_request if has_video else None,
        tolerance=f"{settings.event_tolerance_s:g}" if has_video else None,
        instruction=instruction_digest(settings.gui_instruction) if "gui_action" in templates else None,
    )
