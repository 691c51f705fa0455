"""The Qwen3-VL prelabel resource: a vLLM server reached over its OpenAI-compatible HTTP API.

Thin by design: fields map one to one onto :class:`qwen_dataset.prelabel.vllm.settings.VllmSettings`
and all behaviour lives in :class:`~qwen_dataset.prelabel.vllm.backend.VllmBackend`. Wire the
secrets from the environment::

    VllmPrelabelResource(
        base_url=EnvVar("QWEN_VLLM_BASE_URL"),   # e.g. http://gpu-host:8000
        api_key=EnvVar("QWEN_VLLM_API_KEY"),     # the `vllm serve --api-key`, or "EMPTY"
    )
"""

from __future__ import annotations

from pydantic import Field

from qwen_dataset.payloads import TASK_ORDER
from qwen_dataset.prelabel.templates import DEFAULT_GUI_INSTRUCTION
from qwen_dataset.prelabel.video_events import DEFAULT_TOLERANCE_S
from qwen_dataset.prelabel.vllm.backend import VllmBackend
from qwen_dataset.prelabel.vllm.settings import (
    DEFAULT_MAX_IMAGES_PER_REQUEST,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_TOKENS,
    DEFAULT_MODEL,
    DEFAULT_RETRY_MAX_TOKENS,
    VllmSettings,
)
from resources.prelabel import PrelabelResource

VERSION_ONLY_URL = "http://version-only.invalid"


class VllmPrelabelResource(PrelabelResource):
    """Qwen3-VL on a vLLM server (GPU): all five task templates, or the subset in ``templates``."""

    base_url: str = Field(description="vLLM server root, e.g. http://gpu-host:8000 (QWEN_VLLM_BASE_URL).")
    api_key: str = Field(
        default="EMPTY", description="Bearer token given to `vllm serve --api-key` (QWEN_VLLM_API_KEY)."
    )
    model: str = Field(default=DEFAULT_MODEL, description="Model name as served (see GET /v1/models).")
    max_concurrency: int = Field(default=64, description="Requests in flight at once (and HTTP connections).")
    request_timeout_s: float = Field(default=120.0, description="Seconds one request may take before it is retried.")
    max_retries: int = Field(default=4, description="Retries on connection errors, timeouts, HTTP 429 and 5xx.")
    backoff_base_s: float = Field(default=0.5, description="First retry waits up to this long (full jitter, doubling).")
    backoff_max_s: float = Field(default=30.0, description="Cap on one backoff wait (Retry-After is honoured).")
    max_tokens: int = Field(
        default=DEFAULT_MAX_TOKENS,
        description=(
            "Cap on a request's answer tokens. A request asks for its template's budget (image_to_code "
            "8192, the others 4096), never more than this cap."
        ),
    )
    retry_max_tokens: int = Field(
        default=DEFAULT_RETRY_MAX_TOKENS,
        description=(
            "A truncated answer (finish_reason=length) is asked again with twice the budget up to this many "
            "tokens, then fails; 0: fail at once. The server's max_model_len must hold it."
        ),
    )
    max_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS,
        description="Image pixel budget; larger frames are downscaled keeping aspect (Qwen3-VL: 32x32 px per visual token).",
    )
    templates: list[str] | None = Field(
        default=None, description=f"Task templates this backend offers (default: all of {list(TASK_ORDER)})."
    )
    templates_dir: str = Field(default="", description="Folder of edited templates; empty: the packaged ones.")
    gui_instruction: str = Field(default=DEFAULT_GUI_INSTRUCTION, description="Default instruction for gui_action.")
    max_images_per_request: int = Field(
        default=DEFAULT_MAX_IMAGES_PER_REQUEST,
        description="Video frames per request; match `vllm serve --limit-mm-per-prompt`.",
    )
    event_tolerance_s: float = Field(
        default=DEFAULT_TOLERANCE_S, description="Snap video event boundaries to cuts/audio changes this close."
    )
    reencode_format: str = Field(default="png", description="Format of downscaled frames: png (lossless) or jpeg.")

    def settings(self, base_url: str | None = None) -> VllmSettings:
        return VllmSettings(
            base_url=base_url or self.base_url,
            api_key=self.api_key,
            model=self.model,
            max_concurrency=self.max_concurrency,
            request_timeout_s=self.request_timeout_s,
            max_retries=self.max_retries,
            backoff_base_s=self.backoff_base_s,
            backoff_max_s=self.backoff_max_s,
            max_tokens=self.max_tokens,
            retry_max_tokens=self.retry_max_tokens,
            max_pixels=self.max_pixels,
            tasks=tuple(self.templates) if self.templates else None,
            gui_instruction=self.gui_instruction,
            max_images_per_request=self.max_images_per_request,
            event_tolerance_s=self.event_tolerance_s,
            templates_dir=self.templates_dir,
            reencode_format=self.reencode_format,
        )

    def backend(self) -> VllmBackend:
        """The domain backend; per-run options via ``backend().with_run_options(instruction=...)``."""
        return VllmBackend(self.settings())

    def backend_version(self) -> str:
        """Model, template versions and output-relevant parameters; reads templates, no network.

        Computed when the code location loads, where ``base_url`` may still be an unresolved
        ``EnvVar``; the server's address never changes the output, so a stand-in address is used.
        """
        return VllmBackend(self.settings(base_url=VERSION_ONLY_URL)).version
