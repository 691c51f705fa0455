"""Which inbox folders are complete batches, ready for the pipeline.

A folder ``inbox/<batch>/`` is ready when it holds a ``_READY`` marker (the upload API writes it
last) or when nothing in it changed for ``settle_seconds`` (files copied in by hand).
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

READY_MARKER = "_READY"
BATCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclasses.dataclass(frozen=True)
class InboxScan:
    ready: list[str]
    waiting: list[str]  # still being written
    invalid: list[str]  # folder names that cannot be a batch id


def _newest_mtime(folder: Path) -> float | None:
    newest = None
    for path in folder.rglob("*"):
        if path.is_file():
            mtime = path.stat().st_mtime
            newest = mtime if newest is None else max(newest, mtime)
    return newest


def scan_inbox(inbox: Path, settle_seconds: float = 60.0, now: float | None = None) -> InboxScan:
    """Classify every folder of the inbox; batch names are sorted for deterministic runs."""
    now = time.time() if now is None else now
    ready, waiting, invalid = [], [], []
    if not inbox.is_dir():
        return InboxScan([], [], [])
    for folder in sorted(p for p in inbox.iterdir() if p.is_dir()):
        name = folder.name
        if not BATCH_NAME.match(name) or name == "reports":
            invalid.append(name)
            continue
        if (folder / READY_MARKER).exists():
            ready.append(name)
            continue
        newest = _newest_mtime(folder)
        if newest is not None and now - newest >= settle_seconds:
            ready.append(name)
        else:
            waiting.append(name)
    return InboxScan(ready, waiting, invalid)


def mark_ready(folder: Path) -> None:
    (folder / READY_MARKER).touch()
