"""GUI instructions per file: the ``<batch>.instructions.json`` file beside a batch's inbox folder.

A batch of screenshots often comes with what each one is for ("log in", "提交订单"). Such a batch
puts one JSON object next to its folder, mapping each file's path inside the folder to the
instruction its ``gui_action`` pre-annotation carries out::

    inbox/
      sprint-12/                  the batch: screen_1_login.png, forms/checkout.png, ...
      sprint-12.instructions.json {"screen_1_login.png": "Click 登录",
                                   "forms/checkout.png": "提交订单 Submit the order"}

The file sits beside the folder, not in it, so it is never ingested as an upload. Files are
matched by content (an upload's id is the sha256 of its bytes), so a file renamed on ingest or a
duplicate under another name still gets its instruction; every page of a PDF gets the PDF's.
A frame the file does not name gets the run's ``gui_instruction`` (or the engine's own default).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from qwen_dataset.store.paths import StoragePath

INSTRUCTIONS_SUFFIX = ".instructions.json"


class InstructionFileError(ValueError):
    """The instruction file of a batch cannot be used; the message says what to fix."""


def instructions_path(inbox: StoragePath, batch: str) -> StoragePath:
    """Where a batch's instruction file lives: ``inbox/<batch>.instructions.json``."""
    return inbox / f"{batch}{INSTRUCTIONS_SUFFIX}"


def _sha256(path: StoragePath) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_instruction_map(path: StoragePath) -> dict[str, str]:
    """The file's ``{relative path: instruction}``; empty when there is no file."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InstructionFileError(
            f"{path} is not valid UTF-8 JSON ({error}); write one object {{file: instruction}}"
        ) from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise InstructionFileError(f"{path} must hold one JSON object mapping file paths to instruction strings")
    return {name: text.strip() for name, text in data.items() if text.strip()}


def instructions_by_upload(inbox: StoragePath, batch: str) -> dict[str, str]:
    """``{upload_id: instruction}`` for the files the batch's instruction file names.

    A named file that is not in the batch folder is an error that names it: a typo would
    otherwise silently leave a screen without its instruction.
    """
    named = read_instruction_map(instructions_path(inbox, batch))
    folder = inbox / batch
    found: dict[str, str] = {}
    missing = []
    for name, instruction in named.items():
        path = folder / name
        if not path.is_file():
            missing.append(name)
            continue
        found[_sha256(path)] = instruction
    if missing:
        raise InstructionFileError(
            f"{instructions_path(inbox, batch)} names files that are not in the batch folder {folder}: {sorted(missing)}; "
            "fix the names (paths inside the folder) or remove those entries"
        )
    return found


def instruction_digest(instructions: Mapping[str, str]) -> str:
    """A short hash of the per-file instructions (they change gui_action output, so the version holds it)."""
    text = json.dumps(sorted(instructions.items()), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:8]
