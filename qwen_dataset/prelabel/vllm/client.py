"""The HTTP side: pooled keep-alive connections and retries with full-jitter exponential backoff
(``Retry-After`` honoured).
"""

from __future__ import annotations

import email.utils
import math
import random
import ssl
import time
from functools import lru_cache

import httpx

from qwen_dataset.prelabel.vllm.settings import VllmSettings

# httpcore schedules each pool's requests in time quadratic in its connections: 64 connections in
# one pool cost ~2x the client CPU of 8 pools of 8 (benchmarks/bench_vllm_client.py).
CONNECTIONS_PER_POOL = 8
RETRY_AFTER_FLOOR_CAP_S = 60.0


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


class PooledClient:
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
                verify=tls_context(),
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
def tls_context() -> ssl.SSLContext:
    # httpx's default context (certifi, or SSL_CERT_FILE): loading the CA bundle costs ~25 ms,
    # so build it once rather than once per pool.
    return httpx.create_ssl_context()
