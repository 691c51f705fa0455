"""The workbench benchmark runs end to end at a tiny size (so it cannot break silently), with two
server processes, and its figures come back."""

from __future__ import annotations

import json

import pytest

from benchmarks import bench_workbench


def _tiny(tmp_path, *database: str) -> list[dict]:
    out = tmp_path / "figures.json"
    argv = ["--clients", "3", "--seconds", "2", "--burst", "6", "--burst-saves", "2"]
    argv += ["--in-process-saves", "10", "--rounds", "1", "--workers", "2", "--json", str(out), *database]
    assert bench_workbench.main(argv) == 0
    return json.loads(out.read_text())


def _check(figures: dict) -> None:
    cpu = figures["cpu"]
    assert cpu["cpu_ms_per_save"] > cpu["cpu_ms_floor_update"] > 0
    assert cpu["save_vs_floor"] == pytest.approx(cpu["cpu_ms_per_save"] / cpu["cpu_ms_floor_update"])
    paced, burst = figures["paced"], figures["burst"]
    assert paced["requests"] >= 3 and paced["not_ok"] == 0 and paced["p95_ms"] >= paced["p50_ms"] > 0
    assert burst["requests"] == 6 * (1 + 2) and burst["codes"] == {"200": 18}


def test_the_workbench_benchmark_runs_tiny_on_sqlite(tmp_path):
    (figures,) = _tiny(tmp_path, "--skip-postgres")
    assert figures["database"] == "sqlite" and figures["workers"] == 2
    _check(figures)


@pytest.mark.postgres
def test_the_workbench_benchmark_runs_tiny_on_postgres(tmp_path):
    (figures,) = _tiny(tmp_path, "--skip-sqlite")
    assert figures["database"] == "postgresql"
    _check(figures)
