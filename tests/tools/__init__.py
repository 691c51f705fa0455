"""The real tools the export tests load files with, each in its own virtualenv under ``.tools/``.

Datumaro pins older pillow/pyarrow/pandas than the project, LLaMA-Factory older datasets/trl/
transformers, and Label Studio brings a web stack of its own: none of them may change the
project's pins, so each gets ``<repo>/.tools/<name>-venv``, created on first use (or by
``make tools``, which ``make test`` runs) from the package registry with pinned versions, and
kept between runs. A venv is rebuilt when its pins change. Where a tool needs PyTorch, the CPU
build (``torch==2.13.0``, a local wheel on these machines) is installed first so that no
dependency pulls a CUDA build.

    python -m tests.tools [NAME ...]     # install (all by default) and print how long each took
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOOLS_DIR = Path(os.environ.get("QWEN_TOOLS_DIR", REPO / ".tools"))
STUBS = Path(__file__).resolve().parent / "stubs"
TORCH_CPU = "torch==2.13.0"


@dataclasses.dataclass(frozen=True)
class Tool:
    name: str
    requirements: tuple[str, ...]
    torch_first: bool = False
    # Packages the requirements drag in that cannot load here (CUDA builds next to the CPU torch).
    remove: tuple[str, ...] = ()

    @property
    def venv(self) -> Path:
        return TOOLS_DIR / f"{self.name}-venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def spec(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        # The [cli] extra makes `datum` work (format detection loads every plugin, some need protobuf).
        Tool("datumaro", ("datumaro[cli]==1.13.12", "pycocotools==2.0.11")),
        # torchvision 0.28 is pinned so that pip keeps the CPU torch; its wheel (like torchaudio's)
        # is linked against CUDA torch and cannot load, so both are removed again: LLaMA-Factory's
        # data code imports torchaudio at module level only, and tests/tools/stubs stands in for it.
        Tool(
            "llamafactory",
            ("llamafactory==0.9.5", TORCH_CPU, "torchvision==0.28.0"),
            torch_first=True,
            remove=("torchvision", "torchaudio"),
        ),
        Tool("label-studio", ("label-studio==1.23.2",)),
    )
}


def _pip(tool: Tool, *args: str) -> None:
    subprocess.run([str(tool.python), "-m", "pip", "--quiet", *args], check=True, stdin=subprocess.DEVNULL)


def _marker(tool: Tool) -> Path:
    return tool.venv / ".qwen-tool.json"


def installed(tool: Tool) -> bool:
    marker = _marker(tool)
    return marker.is_file() and json.loads(marker.read_text()).get("spec") == tool.spec


def ensure(name: str) -> Tool:
    """The tool's venv, built first if it is missing or was built with other pins."""
    tool = TOOLS[name]
    if installed(tool):
        return tool
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    with open(TOOLS_DIR / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two pytest processes never build the same venv at once
        if not installed(tool):
            _build(tool)
    return tool


def _build(tool: Tool) -> None:
    started = time.monotonic()
    shutil.rmtree(tool.venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(tool.venv)], check=True)
    _pip(tool, "install", "--upgrade", "pip")
    if tool.torch_first:
        _pip(tool, "install", TORCH_CPU)
    _pip(tool, "install", *tool.requirements)
    if tool.remove:
        _pip(tool, "uninstall", "--yes", *tool.remove)
    seconds = round(time.monotonic() - started, 1)
    _marker(tool).write_text(json.dumps({"spec": tool.spec, "install_seconds": seconds}))


def install_seconds(name: str) -> float | None:
    marker = _marker(TOOLS[name])
    return json.loads(marker.read_text()).get("install_seconds") if marker.is_file() else None


def run_script(name: str, script: str, *args: str, timeout: float = 600) -> dict:
    """Run ``tests/tools/<script>`` in the tool's venv; it prints one JSON object, returned here."""
    tool = ensure(name)
    env = {
        **os.environ,
        "PYTHONPATH": str(STUBS),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(TOOLS_DIR / f"{name}-hf-home"),
    }
    done = subprocess.run(
        [str(tool.python), str(Path(__file__).resolve().parent / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise AssertionError(f"{script} in the {name} venv failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
