"""How much the server takes on at once.

* :class:`AdmissionGate`: at most ``limit`` requests are inside the app at a time; the others wait
  in the event loop, where waiting holds no thread and no database connection. FastAPI runs each
  synchronous dependency and handler on a worker thread of its own, and a request keeps its
  database session (a pooled connection) from the sign-in check to the end. Without the gate, a
  burst of requests took every connection in their first step, then waited for a thread while
  the requests holding a thread waited for a connection: after the pool's 30 s timeout, HTTP 500.
  With at most ``limit`` requests inside and a pool of ``2 * limit`` connections (a request opens
  a second session at most), a request never waits for a connection.
* :class:`AnonymousBodyGuard`: a request that presents no credentials at all (no session cookie,
  no ``Authorization``) and has a body is answered 401 before a byte of the body is read, except
  sign-in; every other route would refuse it anyway. Bodies of everyone else are capped per route
  by FastAPI's own ``max_body_size`` (see :mod:`.api`).
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qwen_dataset.workbench.security import SESSION_COOKIE


class AdmissionGate:
    """Pure ASGI middleware: at most ``limit`` HTTP requests in the app at once (see the module docstring).

    A request gives its place up as soon as its response starts, so streaming a large file (a
    video to a browser) never holds one. Paths starting with one of ``exempt`` pass freely: static
    files (no database) and the upload (it streams its body for minutes and releases its database
    session before reading it).
    """

    def __init__(self, app: ASGIApp, limit: int, exempt: Iterable[str] = ()) -> None:
        self.app, self.limit, self.exempt = app, limit, tuple(exempt)
        # One semaphore per event loop: uvicorn runs one loop, a test client may run several.
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.get(loop)
        if semaphore is None:
            semaphore = self._semaphores[loop] = asyncio.Semaphore(self.limit)
        return semaphore

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        semaphore = self._semaphore()
        await semaphore.acquire()
        held = True

        def leave() -> None:
            nonlocal held
            if held:
                held = False
                semaphore.release()

        async def send_and_leave(message: Message) -> None:
            if message["type"] == "http.response.start":
                leave()
            await send(message)

        try:
            await self.app(scope, receive, send_and_leave)
        finally:
            leave()


class AnonymousBodyGuard:
    """Pure ASGI middleware: a body from a caller without credentials is refused unread (401)."""

    def __init__(self, app: ASGIApp, open_paths: Iterable[str]) -> None:
        self.app, self.open_paths = app, frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.open_paths:
            headers = Headers(scope=scope)
            has_body = headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in headers
            cookies = headers.get("cookie", "")
            if has_body and "authorization" not in headers and f"{SESSION_COOKIE}=" not in cookies:
                await _refuse_unread(send)
                return
        await self.app(scope, receive, send)


async def _refuse_unread(send: Send) -> None:
    body = json.dumps({"detail": "sign in first (or send an API token)"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="qwen-workbench"'),
                # The body was not read: the connection cannot carry another request.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
