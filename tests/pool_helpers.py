"""Work functions for the process-pool tests: importable by name in a spawned worker."""

from __future__ import annotations

import os


def square_or_fail(item: int) -> tuple[int, int, int]:
    """``(item, item**2, pid)``; raises on 3; kills its own process on 5 (a native crash)."""
    if item == 3:
        raise ValueError("three is refused")
    if item == 5:
        os._exit(1)
    return item, item * item, os.getpid()


def failure(item: int, exc: BaseException) -> tuple[int, str, int]:
    return item, f"{type(exc).__name__}: {exc}", -1


def always_crash(item: int) -> tuple[int, int, int]:
    os._exit(1)
