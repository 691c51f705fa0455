"""The deployment shape on PostgreSQL: one dagster-webserver, one dagster-daemon, deploy/dagster.yaml.

Two batches run at the same time (the run queue allows four) and both succeed; then the
services stop and a new webserver on the same database still lists both runs with their whole
event logs and the QC figures of both partitions: history lives in PostgreSQL, not in the
processes or under ``DAGSTER_HOME``.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from tests.ops_helpers import (
    DEPLOY_INSTANCE_YAML,
    add_partition,
    assert_run_succeeded,
    deployment,
    materialization_metadata,
    run_events,
    run_records,
    submit_batch,
    write_tiny_batch,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
BATCHES = ("pg-a", "pg-b")


def runs_in_database(url: str) -> dict[str, str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return dict(connection.execute(text("SELECT run_id, status FROM runs")).all())
    finally:
        engine.dispose()


def test_concurrent_runs_and_history_survive_a_webserver_restart(tmp_path, postgres_url):
    root = tmp_path / "storage"
    for seed, batch in enumerate(BATCHES):
        write_tiny_batch(root / "inbox" / batch, seed=seed)

    with deployment(tmp_path, root, pg_url=postgres_url) as services:
        assert (services.home / "dagster.yaml").read_text() == DEPLOY_INSTANCE_YAML.read_text()  # as deployed
        for batch in BATCHES:
            add_partition(services, batch)
        run_ids = {batch: submit_batch(services, batch) for batch in BATCHES}
        for run_id in run_ids.values():
            assert_run_succeeded(services, run_id)
        before = run_records(services)
        events_before = {run_id: len(run_events(services, run_id)) for run_id in run_ids.values()}

    first, second = (before[run_ids[batch]] for batch in BATCHES)
    assert first["startTime"] < second["endTime"] and second["startTime"] < first["endTime"]  # they overlapped
    assert runs_in_database(postgres_url) == {run_id: "SUCCESS" for run_id in run_ids.values()}
    home = services.home
    assert not list(home.rglob("*.db")), "no SQLite file: the instance keeps nothing under DAGSTER_HOME"

    with deployment(tmp_path, root, pg_url=postgres_url, daemon=False, home=home) as restarted:
        after = run_records(restarted)
        assert set(after) == set(run_ids.values())
        for batch, run_id in run_ids.items():
            assert after[run_id]["status"] == "SUCCESS"
            assert after[run_id]["tags"]["dagster/partition"] == batch
            assert len(run_events(restarted, run_id)) == events_before[run_id]
            qc = materialization_metadata(restarted, "qc_report", batch)
            assert qc["__run_id__"] == run_id and qc["qc/ai_failure_rate"] == 0.0
