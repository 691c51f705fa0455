"""A fast code location for the operations tests: the project's definitions, scripted prelabel.

``dagster dev -m tests.fixtures_code_location`` (from the repository root) serves exactly the
graph of ``qwen_dataset.definitions`` — same assets, checks, jobs, sensor, schedules, resources —
with two substitutions that keep a test run within seconds:

* the prelabel backend is :class:`ScriptedBackend` (one OCR region per frame, no model), so a
  batch needs no RapidOCR and no GPU;
* the executor is the in-process one by default (``QWEN_FIXTURE_EXECUTOR=in_process``, what
  ``qwen_dataset.definitions`` uses too): every step of a run executes in the run worker instead
  of one Python process per step, each of which would import the whole code location again.
  ``QWEN_FIXTURE_EXECUTOR=multiprocess`` switches to Dagster's multiprocess executor, for the
  benchmark's comparison.

Environment:

* ``QWEN_STORAGE_ROOT`` (required) — the storage root of the test.
* ``QWEN_FIXTURE_HOLD_DIR`` — while ``<dir>/hold`` exists, the backend stops after the first
  frame of a batch, writes ``<dir>/annotating.json`` (its pid and the frame it holds at) and
  waits: the crash test kills the run worker at that point, mid-batch inside ``ai_annotations``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from dagster import Definitions, in_process_executor, multiprocess_executor

from qwen_dataset.definitions import build_definitions
from qwen_dataset.prelabel.base import FrameInput, PrelabelBackend, PrelabelOutcome
from qwen_dataset.store.paths import atomic_write_text
from resources.prelabel import PrelabelResource
from tests.fixture_hold import HELD_MARKER, HOLD_FILE

MAX_HOLD_SECONDS = 300.0  # a held worker nobody kills gives up instead of hanging forever
EXECUTORS = {"in_process": in_process_executor, "multiprocess": multiprocess_executor}


class ScriptedBackend(PrelabelBackend):
    """One OCR region ("Hello" near the top-left corner, inside the frame) per frame, instantly."""

    tasks = ("ocr",)
    author = "scripted-fixture"

    def __init__(self, version: str, hold_dir: str = "") -> None:
        self._version = version
        self.hold_dir = Path(hold_dir) if hold_dir else None

    @property
    def version(self) -> str:
        return self._version

    def annotate(self, frames: Sequence[FrameInput], task: str) -> Iterator[PrelabelOutcome]:
        for index, frame in enumerate(frames):
            if index == 1:
                self._hold_if_asked(frame)
            region = {
                "bbox": [1.0, 1.0, float(min(frame.width - 1, 120)), float(min(frame.height - 1, 24))],
                "text": "Hello",
                "confidence": 0.9,
                "language": "en",
                "reading_order": 0,
            }
            yield PrelabelOutcome(frame.frame_id, task, {"regions": [region]})

    def _hold_if_asked(self, frame: FrameInput) -> None:
        if self.hold_dir is None or not (self.hold_dir / HOLD_FILE).exists():
            return
        atomic_write_text(self.hold_dir / HELD_MARKER, json.dumps({"pid": os.getpid(), "frame_id": frame.frame_id}))
        deadline = time.monotonic() + MAX_HOLD_SECONDS
        while (self.hold_dir / HOLD_FILE).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"held for {MAX_HOLD_SECONDS}s and nobody released {self.hold_dir / HOLD_FILE}")
            time.sleep(0.05)


class ScriptedPrelabel(PrelabelResource):
    """The scripted backend as a prelabel resource (what ``QWEN_PRELABEL_BACKEND`` would pick)."""

    version: str = "fixture-1"
    hold_dir: str = ""

    def backend(self) -> ScriptedBackend:
        return ScriptedBackend(self.version, self.hold_dir)

    def backend_version(self) -> str:
        return self.version


def fixture_definitions() -> Definitions:
    """The project's definitions with the scripted backend and the executor named by the environment."""
    root = os.environ.get("QWEN_STORAGE_ROOT")
    if not root:
        raise RuntimeError("QWEN_STORAGE_ROOT is not set: the fixture code location needs the test's storage root.")
    choice = os.environ.get("QWEN_FIXTURE_EXECUTOR", "in_process")
    if choice not in EXECUTORS:
        raise RuntimeError(f"QWEN_FIXTURE_EXECUTOR={choice!r}: use one of {sorted(EXECUTORS)}.")
    prelabel = ScriptedPrelabel(hold_dir=os.environ.get("QWEN_FIXTURE_HOLD_DIR", ""))
    return build_definitions(storage_root=root, prelabel=prelabel, executor=EXECUTORS[choice])


defs = fixture_definitions()
