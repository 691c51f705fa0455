"""vLLM's OpenAI-compatible chat-completions protocol: request messages and body (with
``response_format`` structured output), the JSON encoding that splices image data URLs in as raw
bytes, and reading answers and error bodies.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from typing import Any

import httpx

from qwen_dataset.prelabel.templates import (
    Template,
)

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
RAW_LIMIT = 4000  # characters of an error body or answer kept on a failure row


class RequestFailed(Exception):
    """A request that produced no usable answer (after its retries)."""

    def __init__(self, code: str, reason: str, raw: str = "") -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.raw = raw


@dataclasses.dataclass(frozen=True)
class EncodedImage:
    url_bytes: bytes  # b"data:image/png;base64,..." (ASCII)
    width: int  # the size sent, after any downscaling
    height: int

    @property
    def data_url(self) -> str:
        return self.url_bytes.decode("ascii")


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
    """The chat-completions body with vLLM's ``response_format`` structured output.

    ``max_tokens`` leads the body, so :func:`with_budget` finds it as the first key of the bytes.
    """
    return {
        "max_tokens": min(template.max_tokens, max_tokens),
        "model": model,
        "messages": messages,
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


_BUDGET = re.compile(rb'^\{"max_tokens": \d+')


def with_budget(body: bytes, max_tokens: int) -> bytes:
    """An encoded request (:func:`encode_request` of :func:`build_request_body`) asking for ``max_tokens``.

    Rewrites the leading key in place, so the megabytes of images are not encoded again.
    """
    rewritten, count = _BUDGET.subn(b'{"max_tokens": ' + str(int(max_tokens)).encode(), body, count=1)
    if count != 1:
        raise ValueError("the request body does not start with its max_tokens; build it with build_request_body")
    return rewritten


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
        raise RequestFailed(
            "bad_response", f"the server's answer is not a chat completion ({error!r})", response.text[:RAW_LIMIT]
        ) from error
    if not content:
        raise RequestFailed("empty_response", "the model returned no content", "")
    return str(content), str(choice.get("finish_reason") or "")
