"""A loopback HTTP server that speaks vLLM's OpenAI-compatible protocol, for tests and benchmarks.

It is a real server (Starlette on uvicorn, like ``vllm serve``) bound to 127.0.0.1 on a free
port; the backend under test talks real HTTP to it. It implements ``GET /v1/models`` and
``POST /v1/chat/completions`` and validates requests the way vLLM does: a known model (else 404,
as vLLM answers), messages whose ``image_url`` parts are ``data:`` URLs that decode as images, at
most ``max_images`` images per prompt (``--limit-mm-per-prompt``), a ``response_format`` of type
``json_schema`` carrying a valid JSON Schema, and no ``guided_json`` (removed in vLLM 0.12: a
client that still sends it would silently lose structured output) - all else is a 400 in vLLM's
error shape ``{"error": {"message", "type", "param", "code"}}``.

Answers come from a script of Qwen3-VL-style replies. A test recognises its frames by colour: the
server reads the top-left pixel of a request's first image and takes the next reply queued for
that colour (then the default reply). Replies can be valid JSON, fenced JSON, malformed text,
HTTP errors with ``Retry-After``, or slow answers. Every request is logged.

Run standalone (the benchmark does, so the server's CPU is not counted as the client's)::

    python tests/vllm_fake_server.py --latency 0.5 --reply-file reply.json
    # prints "LISTENING <port>" once ready
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import dataclasses
import io
import json
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import uvicorn
from PIL import Image, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

DEFAULT_MODEL = "Qwen/Qwen3-VL-4B-Instruct"
Colour = tuple[int, int, int]
_HEAD_CHARS = 16384  # base64 characters (a multiple of 4) decoded when pixels are not needed


@dataclasses.dataclass(frozen=True)
class Reply:
    """One scripted answer: the model's text, or an HTTP error, possibly after a delay."""

    content: str = ""
    status: int = 200
    delay_s: float = 0.0
    retry_after: str | None = None
    finish_reason: str = "stop"

    @classmethod
    def json(cls, answer: Any, *, fenced: bool = False, delay_s: float = 0.0) -> Reply:
        text = json.dumps(answer, ensure_ascii=False)
        return cls(content=f"```json\n{text}\n```" if fenced else text, delay_s=delay_s)

    @classmethod
    def error(cls, status: int, retry_after: str | None = None) -> Reply:
        return cls(status=status, retry_after=retry_after)


@dataclasses.dataclass(frozen=True)
class SeenRequest:
    """What the server received (for assertions): one entry per HTTP request."""

    model: str
    colour: Colour | None
    image_sizes: tuple[tuple[int, int], ...]
    texts: tuple[str, ...]
    schema_name: str
    max_tokens: int | None
    status: int
    has_system: bool


class FakeVllm:
    """The app's state: script, log and protocol checks."""

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        default: Reply | Callable[[dict[str, Any]], Reply] = Reply(content="{}"),
        latency_s: float = 0.0,
        api_key: str | None = None,
        max_images: int = 8,
        read_colour: bool = True,  # False: check only each image's header (benchmarks)
    ) -> None:
        self.model = model
        self.default = default
        self.latency_s = latency_s
        self.api_key = api_key
        self.max_images = max_images
        self.read_colour = read_colour
        self.by_colour: dict[Colour, deque[Reply]] = {}
        self.seen: list[SeenRequest] = []
        self._schema_verdicts: dict[str, str] = {}
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0  # the most chat requests the server was answering at once

    def script(self, colour: Colour, *replies: Reply) -> None:
        """Queue replies for requests whose first image's top-left pixel is ``colour``."""
        with self._lock:
            self.by_colour.setdefault(tuple(colour), deque()).extend(replies)

    def requests_for(self, colour: Colour) -> list[SeenRequest]:
        with self._lock:
            return [seen for seen in self.seen if seen.colour == tuple(colour)]

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            ]
        )

    # -- endpoints ----------------------------------------------------------------------------

    async def models(self, request: Request) -> JSONResponse:
        if not self._authorised(request):
            return _error(401, "Unauthorized", "AuthenticationError")
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {
                        "id": self.model,
                        "object": "model",
                        "created": int(time.time()),
                        "owned_by": "vllm",
                        "root": self.model,
                        "parent": None,
                        "max_model_len": 32768,
                    }
                ],
            }
        )

    async def chat_completions(self, request: Request) -> JSONResponse:
        if not self._authorised(request):
            return _error(401, "Unauthorized", "AuthenticationError")
        try:
            body = json.loads(await request.body())
        except json.JSONDecodeError as error:
            return self._reject(400, f"request body is not JSON: {error}")
        if not isinstance(body, dict):
            return self._reject(400, "request body must be a JSON object")
        problem, images, texts = self._check(body)
        if problem is not None:
            status, message = problem
            return self._reject(status, message, body)
        colour = _top_left(images[0]) if images and self.read_colour else None
        reply = self._next_reply(colour, body)
        self._log(body, colour, images, texts, reply.status)
        if self.latency_s or reply.delay_s:
            with self._lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(self.latency_s + reply.delay_s)
            finally:
                with self._lock:
                    self.in_flight -= 1
        if reply.status != 200:
            headers = {"Retry-After": reply.retry_after} if reply.retry_after is not None else None
            kind = "RateLimitError" if reply.status == 429 else "InternalServerError"
            return _error(reply.status, f"scripted HTTP {reply.status}", kind, headers)
        return JSONResponse(_completion(body["model"], reply))

    # -- protocol checks ----------------------------------------------------------------------

    def _check(self, body: dict[str, Any]) -> tuple[tuple[int, str] | None, list[Image.Image], list[str]]:
        images: list[Image.Image] = []
        texts: list[str] = []
        if "guided_json" in body:
            return (400, "guided_json was removed in vLLM 0.12; use response_format {type: json_schema}"), images, texts
        if body.get("model") != self.model:
            return (404, f"The model `{body.get('model')}` does not exist."), images, texts
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return (400, "messages must be a non-empty list"), images, texts
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in {"system", "user", "assistant"}:
                return (400, f"invalid message {str(message)[:80]}"), images, texts
            content = message.get("content")
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
            if not isinstance(parts, list):
                return (400, "message content must be a string or a list of parts"), images, texts
            for part in parts:
                problem = self._read_part(part, images, texts)
                if problem:
                    return (400, problem), images, texts
        if len(images) > self.max_images:
            return (400, f"At most {self.max_images} image(s) may be provided in one prompt."), images, texts
        response_format = body.get("response_format")
        if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
            return (400, "response_format {type: json_schema} is required by this server"), images, texts
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not spec.get("name") or not isinstance(spec.get("schema"), dict):
            return (400, "response_format.json_schema needs a name and a schema object"), images, texts
        schema_problem = self._schema_problem(spec["schema"])
        if schema_problem:
            return (400, f"invalid JSON schema: {schema_problem}"), images, texts
        max_tokens = body.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            return (400, "max_tokens must be at least 1"), images, texts
        return None, images, texts

    def _schema_problem(self, schema: dict[str, Any]) -> str:
        # Checking against the meta-schema costs milliseconds; like vLLM's grammar cache, check
        # each distinct schema once.
        key = json.dumps(schema, sort_keys=True)
        with self._lock:
            if key in self._schema_verdicts:
                return self._schema_verdicts[key]
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
            verdict = ""
        except jsonschema.SchemaError as error:
            verdict = error.message
        with self._lock:
            self._schema_verdicts[key] = verdict
        return verdict

    def _read_part(self, part: Any, images: list[Image.Image], texts: list[str]) -> str:
        if not isinstance(part, dict):
            return "content parts must be objects"
        if part.get("type") == "text":
            texts.append(str(part.get("text", "")))
            return ""
        if part.get("type") != "image_url":
            return f"unsupported content part type {part.get('type')!r}"
        url = (part.get("image_url") or {}).get("url", "")
        header, _, data = url.partition(",")
        if not (header.startswith("data:image/") and header.endswith(";base64")):
            return "image_url must be a data:image/...;base64 URL in this test server"
        try:
            if self.read_colour:
                image = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
                image.load()
            else:
                # Benchmark mode: decode only the head, enough for the format and size, so the
                # server's CPU per request stays small next to the client's.
                image = Image.open(io.BytesIO(base64.b64decode(data[:_HEAD_CHARS], validate=True)))
        except (binascii.Error, UnidentifiedImageError, OSError) as error:
            return f"image_url does not decode as an image: {error}"
        images.append(image)
        return ""

    # -- helpers ------------------------------------------------------------------------------

    def _authorised(self, request: Request) -> bool:
        return self.api_key is None or request.headers.get("authorization") == f"Bearer {self.api_key}"

    def _next_reply(self, colour: Colour | None, body: dict[str, Any]) -> Reply:
        with self._lock:
            queue = self.by_colour.get(colour) if colour is not None else None
            if queue:
                return queue.popleft()
        return self.default(body) if callable(self.default) else self.default

    def _log(
        self, body: dict[str, Any], colour: Colour | None, images: list[Image.Image], texts: list[str], status: int
    ) -> None:
        spec = (body.get("response_format") or {}).get("json_schema") or {}
        seen = SeenRequest(
            model=str(body.get("model")),
            colour=colour,
            image_sizes=tuple(image.size for image in images),
            texts=tuple(texts),
            schema_name=str(spec.get("name", "")),
            max_tokens=body.get("max_tokens"),
            status=status,
            has_system=any(message.get("role") == "system" for message in body.get("messages", [])),
        )
        with self._lock:
            self.seen.append(seen)

    def _reject(self, status: int, message: str, body: dict[str, Any] | None = None) -> JSONResponse:
        with self._lock:
            self.seen.append(SeenRequest(str((body or {}).get("model")), None, (), (), "", None, status, False))
        kind = "NotFoundError" if status == 404 else "BadRequestError"
        return _error(status, message, kind)


def _top_left(image: Image.Image) -> Colour:
    pixel = image.convert("RGB").getpixel((0, 0))
    return (int(pixel[0]), int(pixel[1]), int(pixel[2]))


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": status}},
        status_code=status,
        headers=headers,
    )


def _completion(model: str, reply: Reply) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content, "reasoning_content": None, "tool_calls": []},
                "logprobs": None,
                "finish_reason": reply.finish_reason,
                "stop_reason": None,
            }
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
    }


class FakeVllmServer:
    """Runs a :class:`FakeVllm` on 127.0.0.1:<free port> in a background thread (context manager)."""

    def __init__(self, fake: FakeVllm) -> None:
        self.fake = fake
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            fake.app(), log_level="warning", lifespan="off", timeout_graceful_shutdown=1, backlog=1024
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeVllmServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake vLLM server did not start within 10 s")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


def main(argv: list[str] | None = None) -> None:
    """Serve until stdin closes (the parent process ends us by closing the pipe)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.0, help="seconds every answer waits (asyncio sleep)")
    parser.add_argument("--reply-file", help="JSON file with the answer every request gets")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args(argv)
    content = Path(args.reply_file).read_text(encoding="utf-8") if args.reply_file else "{}"
    fake = FakeVllm(model=args.model, default=Reply(content=content), latency_s=args.latency, read_colour=False)
    with FakeVllmServer(fake) as server:
        print(f"LISTENING {server.port}", flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
