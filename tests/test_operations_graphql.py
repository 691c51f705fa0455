"""Operating the pipeline from a script: dagster_graphql's client against a running ``dagster dev``.

A data engineer adds a batch partition, launches ``process_batch`` for it with
``DagsterGraphQLClient.submit_job_execution`` (partition tag ``dagster/partition``), polls
``get_run_status`` and reads the lineage and the QC figures back over GraphQL. Meanwhile the
daemon's inbox sensor finds a second, settled inbox folder on its own, adds its partition and
runs it: automation works under the daemon without anyone clicking.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.ops_helpers import (
    add_partition,
    age_files,
    assert_run_succeeded,
    copy_batch,
    dagster_dev,
    materialization_metadata,
    run_records,
    sample_batch,
    submit_batch,
    wait_for,
    write_tiny_batch,
)

pytestmark = pytest.mark.slow  # starts real Dagster services: tens of seconds
SCRIPTED = "gql-sample"
DROPPED = "dropped-by-hand"
# The stages a batch flows through, each an edge of the asset graph.
LINEAGE_EDGES = [
    ("raw_uploads", "frames"),
    ("frames", "ai_annotations"),
    ("ai_annotations", "human_corrections"),
    ("human_corrections", "qc_report"),
    ("qc_report", "exports"),
    ("qc_report", "augmented_dataset"),
    ("exports", "release"),
    ("augmented_dataset", "release"),
]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return sample_batch(tmp_path_factory)


def asset_edges(services) -> set[tuple[str, str]]:
    data = services.graphql("{ assetNodes { assetKey { path } dependencyKeys { path } } }")
    return {
        ("/".join(dep["path"]), "/".join(node["assetKey"]["path"]))
        for node in data["assetNodes"]
        for dep in node["dependencyKeys"]
    }


def sensor_run_for(services, batch: str) -> str | None:
    for run_id, record in run_records(services).items():
        tags = record["tags"]
        if tags.get("dagster/sensor_name") == "inbox_sensor" and tags.get("dagster/partition") == batch:
            return run_id
    return None


def test_graphql_client_runs_a_batch_while_the_sensor_runs_another(tmp_path, sample):
    folder, truth = sample
    root = tmp_path / "storage"
    copy_batch(folder, root, SCRIPTED)
    dropped = write_tiny_batch(root / "inbox" / DROPPED, seed=1)
    age_files(dropped, 600)  # copied in ten minutes ago: the sensor's settle time has passed

    with dagster_dev(tmp_path, root) as services:
        assert set(LINEAGE_EDGES) <= asset_edges(services)

        add_partition(services, SCRIPTED)
        run_id = submit_batch(services, SCRIPTED)
        assert_run_succeeded(services, run_id)
        assert run_records(services)[run_id]["tags"]["dagster/partition"] == SCRIPTED

        qc = materialization_metadata(services, "qc_report", SCRIPTED)
        assert qc["__run_id__"] == run_id
        assert qc["qc/ai_failure_rate"] == 0.0
        assert "ai_failure_rate" in qc["summary"] and "mean_iou" in qc["summary"]
        assert json.loads(qc["targets"])["mean_iou"] == 0.85
        uploads = materialization_metadata(services, "raw_uploads", SCRIPTED)
        assert uploads["files"] == len(truth.files) and uploads["quarantined"] == len(truth.broken)

        sensor_run = wait_for(
            "the inbox sensor to launch a run for the settled folder",
            lambda: sensor_run_for(services, DROPPED),
            120,
            services.log_tail,
            0.5,
        )
        assert_run_succeeded(services, sensor_run)
        assert run_records(services)[sensor_run]["tags"]["dagster/run_key"] == f"inbox:{DROPPED}"

    manifest = pd.read_parquet(root / "manifests" / "raw_uploads" / f"{SCRIPTED}.parquet")
    assert len(manifest) == len(truth.files) and manifest["upload_id"].notna().all()
    assert (root / "exports" / SCRIPTED / "qwen_ocr.jsonl").is_file()
    assert len(pd.read_parquet(root / "manifests" / "raw_uploads" / f"{DROPPED}.parquet")) == 2
