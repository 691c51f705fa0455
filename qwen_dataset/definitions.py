"""The Dagster code location: ``dagster dev -m qwen_dataset.definitions`` (or workspace.yaml).

Configuration comes from the environment (see the README):

* ``QWEN_STORAGE_ROOT``      storage root (default ``.storage``): a folder or an fsspec URL (``s3://…``)
* ``QWEN_STORAGE_OPTIONS``   file-system options of a URL root, JSON (e.g. ``{"endpoint_url": …}``)
* ``QWEN_STORAGE_CACHE``     local blob cache of a URL root (default ``~/.cache/qwen-dataset``)
* ``QWEN_DATABASE_URL``      annotation database (default SQLite under a local storage root;
  required with a URL root)
* ``QWEN_PRELABEL_BACKEND``  ``rapidocr`` (default, CPU) or ``vllm`` (Qwen3-VL on a vLLM server:
  ``QWEN_VLLM_BASE_URL``, ``QWEN_VLLM_API_KEY``, ``QWEN_VLLM_MODEL``)
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, cast

from dagster import Definitions, EnvVar, ExecutorDefinition, definitions, in_process_executor

from assets.annotate import ai_annotations_gate, build_ai_annotations
from assets.augment import augmented_dataset
from assets.automation import corrections_sensor, inbox_sensor, nightly_reexport, nightly_release
from assets.export import exports
from assets.frames import frames, frames_gate
from assets.ingest import raw_uploads, raw_uploads_gate
from assets.jobs import process_batch_job, reexport_job, release_job
from assets.logs import quiet_console_logger
from assets.quality import qc_gate, qc_report
from assets.release import release
from assets.review import human_corrections, human_corrections_gate
from qwen_dataset.db.urls import sqlite_url
from qwen_dataset.exporters.label_studio.media import LABEL_STUDIO_MEDIA_ENV
from qwen_dataset.prelabel.ocr_engines import ENGINES as OCR_ENGINES
from qwen_dataset.quality.targets import DEFAULT_WORKBENCH_URL
from qwen_dataset.store.paths import CACHE_ENV, is_url_root
from resources import (
    AnnotationDatabaseResource,
    ParquetManifestIOManager,
    PrelabelResource,
    RapidOcrResource,
    StorageResource,
)
from resources.prelabel import OcrEngineName
from resources.quality import QualityResource


def edited_templates_dir(storage: StorageResource) -> str:
    """The folder of templates admins edited in the workbench (``<root>/templates``), or "".

    On a URL root it is copied into the local cache when the code location loads, since the
    template loader reads files.
    """
    layout = storage.open_layout()
    if layout.remote:
        layout.ensure()  # an unreachable store fails here with what to check, not deep in fsspec
    edited = layout.root / "templates"
    if not edited.is_dir():
        return ""
    if not layout.remote:
        return str(edited)
    assert layout.cache is not None, "a URL root always has a local cache"
    local = layout.cache / "templates" / hashlib.sha256(str(layout.root).encode()).hexdigest()[:16]
    with layout.local_copy(edited) as copy:
        shutil.rmtree(local, ignore_errors=True)
        shutil.copytree(copy, local)
    return str(local)


def database_url_for(root: str) -> str:
    """``QWEN_DATABASE_URL``, else SQLite under a local root (a URL root has nowhere to keep it)."""
    url = os.environ.get("QWEN_DATABASE_URL")
    if url:
        return url
    if is_url_root(root):
        raise ValueError(
            f"QWEN_STORAGE_ROOT={root} is object storage, where SQLite cannot live: set QWEN_DATABASE_URL to the "
            "annotation database, e.g. postgresql://user:password@host:5432/qwen"
        )
    return sqlite_url(Path(root) / "annotations.db")


def prelabel_resource_from_env(storage: StorageResource) -> PrelabelResource:
    """RapidOCR on the CPU by default; Qwen3-VL on a vLLM server with QWEN_PRELABEL_BACKEND=vllm."""
    choice = os.environ.get("QWEN_PRELABEL_BACKEND", "rapidocr").strip().lower()
    if choice == "rapidocr":
        engine = os.environ.get("QWEN_OCR_ENGINE", "rapidocr")
        if engine not in OCR_ENGINES:
            raise ValueError(f"QWEN_OCR_ENGINE={engine!r} is not an OCR engine; use one of {sorted(OCR_ENGINES)}")
        return RapidOcrResource(
            engine=cast(OcrEngineName, engine),  # checked just above
            workers=int(os.environ.get("QWEN_OCR_WORKERS", "0")),
            threads=int(os.environ.get("QWEN_OCR_THREADS", "1")),
        )
    if choice == "vllm":
        from resources.vlm import VllmPrelabelResource

        return VllmPrelabelResource(
            base_url=EnvVar("QWEN_VLLM_BASE_URL"),
            api_key=EnvVar("QWEN_VLLM_API_KEY"),
            model=os.environ.get("QWEN_VLLM_MODEL", "Qwen/Qwen3-VL-4B-Instruct"),
            templates_dir=edited_templates_dir(storage),
        )
    raise ValueError(f"QWEN_PRELABEL_BACKEND={choice!r} is not a known backend; use 'rapidocr' or 'vllm'.")


def build_definitions(
    storage_root: str | None = None,
    database_url: str | None = None,
    prelabel: PrelabelResource | None = None,
    storage_options: dict[str, Any] | None = None,
    executor: ExecutorDefinition = in_process_executor,
) -> Definitions:
    """The code location; tests call this with their own root, database and backend.

    ``executor`` defaults to the in-process one; a caller that wants another passes it here
    (a merged second ``Definitions(executor=...)`` is refused by Dagster).
    """
    root = storage_root or os.environ.get("QWEN_STORAGE_ROOT", ".storage")
    # QWEN_STORAGE_OPTIONS may hold credentials: the resource reads it at run time, so it never
    # becomes resource config the UI displays.
    storage = StorageResource(
        root=root,
        storage_options=storage_options or {},
        cache=os.environ.get(CACHE_ENV) or None,
        label_studio_media_url=os.environ.get(LABEL_STUDIO_MEDIA_ENV) or None,
    )
    url = database_url or database_url_for(root)
    prelabel = prelabel or prelabel_resource_from_env(storage)
    return Definitions(
        # Steps run one after another in the run worker: a process per step would re-import the
        # code location (seconds each) for no parallelism the batch graph could use.
        executor=executor,
        assets=[
            raw_uploads,
            frames,
            build_ai_annotations(prelabel.backend_version()),
            human_corrections,
            qc_report,
            exports,
            augmented_dataset,
            release,
        ],
        asset_checks=[raw_uploads_gate, frames_gate, ai_annotations_gate, human_corrections_gate, qc_gate],
        jobs=[process_batch_job, reexport_job, release_job],
        # The terminal at INFO (QWEN_LOG_LEVEL), one line per gate failure; the UI keeps every event.
        loggers={"console": quiet_console_logger.configured({"log_level": os.environ.get("QWEN_LOG_LEVEL", "INFO")})},
        sensors=[inbox_sensor, corrections_sensor],
        schedules=[nightly_reexport, nightly_release],
        resources={
            "storage": storage,
            "annotation_db": AnnotationDatabaseResource(url=url),
            "prelabel": prelabel,
            "quality": QualityResource(workbench_url=os.environ.get("QWEN_WORKBENCH_URL", DEFAULT_WORKBENCH_URL)),
            "io_manager": ParquetManifestIOManager(storage=storage),
        },
    )


@definitions
def defs() -> Definitions:
    """The location from the environment, built when Dagster loads it (Dagster's lazy entry point):
    importing this module for ``build_definitions`` (the fixture location, tests, scripts) builds nothing."""
    return build_definitions()
