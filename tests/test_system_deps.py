"""`make demo` / `make test` check the system packages first and say exactly what to install."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "system_deps.sh"


def _bare_path(tmp_path: Path) -> str:
    """A PATH with the shell tools the script uses and nothing else (no apt-get, npm, chromium)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("bash", "grep", "id", "cat", "ldconfig"):
        found = shutil.which(tool) or shutil.which(tool, path="/sbin:/usr/sbin")
        if found:
            (folder / tool).symlink_to(found)
    return str(folder)


def test_missing_packages_are_named_with_the_command_to_install_them(tmp_path) -> None:
    env = {"PATH": _bare_path(tmp_path), "QWEN_CHROMIUM_PATH": str(tmp_path / "no-chromium")}
    result = subprocess.run(["bash", str(SCRIPT), "test"], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "chromium" in result.stderr and "nodejs npm" in result.stderr
    assert "sudo apt-get install -y --no-install-recommends" in result.stderr


def test_the_demo_does_not_ask_for_npm(tmp_path) -> None:
    env = {"PATH": _bare_path(tmp_path), "QWEN_CHROMIUM_PATH": str(tmp_path / "no-chromium")}
    result = subprocess.run(["bash", str(SCRIPT), "demo"], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "npm" not in result.stderr


def test_a_complete_machine_passes_silently() -> None:
    result = subprocess.run(["bash", str(SCRIPT), "test"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stderr == ""
