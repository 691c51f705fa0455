"""The Dagster code location: ``dagster dev -m qwen_dataset.definitions`` (or workspace.yaml).

Configuration comes from the environment (see the README):

* ``QWEN_STORAGE_ROOT``      storage root (default ``.storage``)
* ``QWEN_DATABASE_URL``      annotation database (default SQLite under the storage root)
* ``QWEN_PRELABEL_BACKEND``  ``rapidocr`` (default, CPU) or ``vllm`` (Qwen3-VL on a vLLM server:
  ``QWEN_VLLM_BASE_URL``, ``QWEN_VLLM_API_KEY``, ``QWEN_VLLM_MODEL``)
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import Definitions, EnvVar, in_process_executor

from assets.annotate import ai_annotations_gate, build_ai_annotations
from assets.augment import augmented_dataset
from assets.automation import corrections_sensor, inbox_sensor, nightly_release, nightly_reexport
from assets.export import exports
from assets.frames import frames, frames_gate
from assets.ingest import raw_uploads, raw_uploads_gate
from assets.jobs import process_batch_job, reexport_job, release_job
from assets.release import release
from assets.quality import qc_gate, qc_report
from assets.review import human_corrections, human_corrections_gate
from qwen_dataset.annotation_db import sqlite_url
from resources.quality import QualityResource
from resources import (
    AnnotationDatabaseResource,
    ParquetManifestIOManager,
    PrelabelResource,
    RapidOcrResource,
    StorageResource,
)


def prelabel_resource_from_env(storage_root: str) -> PrelabelResource:
    """RapidOCR on the CPU by default; Qwen3-VL on a vLLM server with QWEN_PRELABEL_BACKEND=vllm."""
    choice = os.environ.get("QWEN_PRELABEL_BACKEND", "rapidocr").strip().lower()
    if choice == "rapidocr":
        return RapidOcrResource()
    if choice == "vllm":
        from resources.vlm import VllmPrelabelResource

        # Templates edited by admins in the workbench are materialized under <root>/templates.
        edited = Path(storage_root) / "templates"
        return VllmPrelabelResource(
            base_url=EnvVar("QWEN_VLLM_BASE_URL"),
            api_key=EnvVar("QWEN_VLLM_API_KEY"),
            model=os.environ.get("QWEN_VLLM_MODEL", "Qwen/Qwen3-VL-4B-Instruct"),
            templates_dir=str(edited) if edited.is_dir() else "",
        )
    raise ValueError(f"QWEN_PRELABEL_BACKEND={choice!r} is not a known backend; use 'rapidocr' or 'vllm'.")


def build_definitions(storage_root: str | None = None, database_url: str | None = None,
                      prelabel: PrelabelResource | None = None) -> Definitions:
    """The code location; tests call this with their own root, database and backend."""
    root = storage_root or os.environ.get("QWEN_STORAGE_ROOT", ".storage")
    url = database_url or os.environ.get("QWEN_DATABASE_URL") or sqlite_url(Path(root) / "annotations.db")
    prelabel = prelabel or prelabel_resource_from_env(root)
    storage = StorageResource(root=root)
    return Definitions(
        # Steps run one after another in the run worker: a process per step would re-import the
        # code location (seconds each) for no parallelism the batch graph could use.
        executor=in_process_executor,
        assets=[raw_uploads, frames, build_ai_annotations(prelabel.backend_version()), human_corrections, qc_report, exports, augmented_dataset, release],
        asset_checks=[raw_uploads_gate, frames_gate, ai_annotations_gate, human_corrections_gate, qc_gate],
        jobs=[process_batch_job, reexport_job, release_job],
        sensors=[inbox_sensor, corrections_sensor],
        schedules=[nightly_reexport, nightly_release],
        resources={
            "storage": storage,
            "annotation_db": AnnotationDatabaseResource(url=url),
            "prelabel": prelabel,
            "quality": QualityResource(),
            "io_manager": ParquetManifestIOManager(storage=storage),
        },
    )


defs = build_definitions()
