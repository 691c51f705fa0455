"""An empty batch's run loads neither Great Expectations nor albumentations, matplotlib or scipy, and
the code location loads without SQLAlchemy: every run worker of a launched empty batch would pay
seconds for them (benchmarks/bench_dagster_overhead.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def test_a_batch_without_frames_gets_the_tables_augment_batch_gives_it(tmp_path):
    from assets.augment import nothing_to_augment
    from qwen_dataset.augment import augment_batch
    from qwen_dataset.records import AnnotationRecord, FrameRecord, to_frame
    from qwen_dataset.store.blobs import BlobStore

    result = augment_batch(
        to_frame([], FrameRecord), to_frame([], AnnotationRecord), BlobStore(tmp_path), ["geometric"]
    )
    tables = nothing_to_augment()
    for name in ("frames", "annotations", "lineage", "rejected"):
        expected = getattr(result, name)
        pd.testing.assert_frame_equal(tables[name], expected)
        assert list(tables[name].dtypes) == list(expected.dtypes), name


def test_an_empty_batch_runs_without_great_expectations_albumentations_matplotlib_or_scipy(tmp_path):
    code = f"""
import sys
from pathlib import Path
from dagster import DagsterInstance
from qwen_dataset.definitions import build_definitions
from tests.fixtures_code_location import ScriptedPrelabel

root = Path({str(tmp_path / "storage")!r})
(root / "inbox" / "empty").mkdir(parents=True)
job = build_definitions(storage_root=str(root), prelabel=ScriptedPrelabel()).resolve_job_def("process_batch")
with DagsterInstance.ephemeral() as instance:
    instance.add_dynamic_partitions("batches", ["empty"])
    assert job.execute_in_process(instance=instance, partition_key="empty").success
unwanted = ("great_expectations", "albumentations", "torch", "matplotlib", "scipy")
loaded = sorted(m for m in unwanted if m in sys.modules)
assert not loaded, f"an empty batch loaded {{loaded}}"
"""
    env = {**os.environ, "PYTHONPATH": str(REPO), "QWEN_STORAGE_ROOT": str(tmp_path / "fixture")}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_the_code_location_loads_without_sqlalchemy_httpx_or_the_default_backend(tmp_path):
    """What every code server and run worker imports: the database, the test helpers' HTTP client and
    the default (RapidOCR) location's backend load only where they are used."""
    code = """
import sys
import tests.fixtures_code_location
unwanted = ("sqlalchemy", "httpx", "matplotlib", "scipy", "qwen_dataset.prelabel.classical.backend")
loaded = sorted(m for m in unwanted if m in sys.modules)
assert not loaded, f"the code location loaded {loaded}"
"""
    env = {**os.environ, "PYTHONPATH": str(REPO), "QWEN_STORAGE_ROOT": str(tmp_path / "fixture")}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
