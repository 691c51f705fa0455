"""Admin edits of the prelabel templates (prompt + schema), stored in the database.

Choice: the database is the source of truth for edits (``template_overrides``: who changed what,
when; it survives redeploys, and the packaged files under ``qwen_dataset/prelabel/templates/``,
which are tracked in git and may sit in a read-only install, are never written). Every accepted
edit is checked exactly as the prelabel backend checks a template (:func:`load_template` on a
scratch copy: valid YAML/JSON, schema, example passes the parser) and then materialized, with the
untouched packaged templates, into ``<storage root>/templates/<task>/``. Set the VLM resource's
``templates_dir`` (:mod:`resources.vlm`) to that folder to pre-annotate with the edited templates;
their content hash changes the template version, which marks ``ai_annotations`` stale.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from sqlalchemy.orm import Session

from qwen_dataset.db.models import TemplateOverride
from qwen_dataset.payloads import TASK_ORDER
from qwen_dataset.prelabel.templates import TEMPLATES_DIR, TemplateError, load_template
from qwen_dataset.store.paths import StoragePath, atomic_write_text

#: File name -> column of :class:`TemplateOverride`.
FILES = {
    "template.yaml": "template_yaml",
    "prompt.txt": "prompt",
    "schema.json": "schema_json",
    "example.json": "example_json",
}
MAX_FILE_CHARS = 200_000


@dataclasses.dataclass(frozen=True)
class TemplateView:
    task: str
    files: dict[str, str]
    overridden: bool
    version_tag: str
    updated_at: str = ""


def packaged_files(task: str) -> dict[str, str]:
    folder = TEMPLATES_DIR / task
    return {name: (folder / name).read_text(encoding="utf-8") for name in FILES}


def _check_task(task: str) -> None:
    if task not in TASK_ORDER:
        raise TemplateError(f"unknown task {task!r}: the tasks are {list(TASK_ORDER)}")


def effective_files(session: Session, task: str) -> tuple[dict[str, str], TemplateOverride | None]:
    _check_task(task)
    override = session.get(TemplateOverride, task)
    if override is None:
        return packaged_files(task), None
    return {name: getattr(override, column) for name, column in FILES.items()}, override


def _write_folder(folder: StoragePath, files: dict[str, str]) -> None:
    for name, content in files.items():
        atomic_write_text(folder / name, content)


def check_files(task: str, files: dict[str, str]) -> str:
    """Load the files as the backend would; returns the template's version tag or raises TemplateError."""
    with tempfile.TemporaryDirectory(prefix="qwb-template-") as scratch:
        _write_folder(Path(scratch) / task, files)
        try:
            return load_template(task, Path(scratch)).version_tag
        except TemplateError as error:
            raise TemplateError(str(error).replace(scratch, "<edited template>")) from None


def view(session: Session, task: str) -> TemplateView:
    files, override = effective_files(session, task)
    return TemplateView(
        task,
        files,
        override is not None,
        check_files(task, files),
        override.updated_at.isoformat(timespec="seconds") if override else "",
    )


def save_override(
    session: Session, task: str, files: dict[str, str], user_id: int | None, storage_root: StoragePath
) -> TemplateView:
    """Check and store an edit (missing files keep their current content), then materialize it; commits."""
    current, override = effective_files(session, task)
    unknown = sorted(set(files) - set(FILES))
    if unknown:
        raise TemplateError(f"unknown template file(s) {unknown}; a template has {list(FILES)}")
    merged = {name: files.get(name, current[name]) for name in FILES}
    too_long = [name for name, text in merged.items() if not isinstance(text, str) or len(text) > MAX_FILE_CHARS]
    if too_long:
        raise TemplateError(f"{too_long} must be text of at most {MAX_FILE_CHARS} characters")
    version_tag = check_files(task, merged)
    if override is None:
        override = TemplateOverride(
            task=task, updated_by=user_id, **{FILES[name]: text for name, text in merged.items()}
        )
        session.add(override)
    else:
        for name, text in merged.items():
            setattr(override, FILES[name], text)
        override.updated_by = user_id
    session.commit()
    materialize(session, storage_root)
    return TemplateView(task, merged, True, version_tag, override.updated_at.isoformat(timespec="seconds"))


def reset_override(session: Session, task: str, storage_root: StoragePath) -> None:
    """Drop the edit: the packaged template applies again; commits."""
    _check_task(task)
    override = session.get(TemplateOverride, task)
    if override is not None:
        session.delete(override)
        session.commit()
    materialize(session, storage_root)


def templates_dir(storage_root: StoragePath) -> StoragePath:
    return storage_root / "templates"


def materialize(session: Session, storage_root: StoragePath) -> StoragePath:
    """Write every task's effective template under ``<storage root>/templates/``; returns that folder."""
    target = templates_dir(storage_root)
    for task in TASK_ORDER:
        if (TEMPLATES_DIR / task).is_dir():
            _write_folder(target / task, effective_files(session, task)[0])
    return target
