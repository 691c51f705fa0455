"""Worker processes for OCR: the plan fits the cores, the pool gives one result per item whatever fails."""

from __future__ import annotations

import itertools
import os

import pytest

from qwen_dataset.prelabel.ocr_pool import ProcessPlan, available_cores, map_in_processes, plan_processes
from tests import pool_helpers


@pytest.mark.parametrize(("workers", "threads", "cores"), itertools.product(range(0, 6), range(0, 6), (1, 2, 3, 8, 16)))
def test_a_plan_never_oversubscribes_the_cores(workers: int, threads: int, cores: int) -> None:
    plan = plan_processes(workers, threads, cores=cores)
    assert plan.workers >= 1 and plan.threads >= 1
    assert plan.workers * plan.threads <= cores
    if workers:
        assert plan.workers == min(workers, cores)
    if threads and workers == 0:
        assert plan.threads == min(threads, cores)


def test_plans_by_default_use_every_core() -> None:
    assert plan_processes(0, 1, cores=2) == ProcessPlan(workers=2, threads=1)
    assert plan_processes(0, 2, cores=2) == ProcessPlan(workers=1, threads=2)
    assert plan_processes(2, 0, cores=16) == ProcessPlan(workers=2, threads=8)
    assert plan_processes(0, 1).cores == available_cores()
    with pytest.raises(ValueError, match="workers and threads"):
        plan_processes(-1, 1)


def test_every_item_comes_back_once_from_several_processes() -> None:
    results = list(map_in_processes(range(12), pool_helpers.square_or_fail, pool_helpers.failure, workers=2))
    assert sorted(r[0] for r in results) == list(range(12))
    good = [r for r in results if r[2] != -1]
    assert all(square == item * item for item, square, _pid in good)
    assert len({pid for *_, pid in good}) >= 2, "both workers took items"
    assert os.getpid() not in {pid for *_, pid in good}
    by_item = {r[0]: r for r in results}
    assert "BrokenProcessPool" in by_item[5][1]
    # Item 3's own error, unless its answer was still on its way when item 5 broke the pool: what
    # was in flight then (at most 2 per worker) shares item 5's fate.
    assert by_item[3][1] == "ValueError: three is refused" or "BrokenProcessPool" in by_item[3][1]
    assert len(results) - len(good) <= 1 + 2 * 2, results


def test_an_item_that_raises_comes_back_with_its_error_from_several_processes() -> None:
    results = list(map_in_processes([1, 2, 3, 4, 6], pool_helpers.square_or_fail, pool_helpers.failure, workers=2))
    by_item = {r[0]: r for r in results}
    assert sorted(by_item) == [1, 2, 3, 4, 6]
    assert by_item[3] == (3, "ValueError: three is refused", -1)
    assert all(by_item[item][1] == item * item for item in (1, 2, 4, 6))


def test_a_dying_worker_fails_only_what_was_in_flight_and_the_rest_goes_on() -> None:
    # One worker, so exactly item 5 and the item queued behind it are in flight when it dies.
    results = list(map_in_processes(range(10), pool_helpers.square_or_fail, pool_helpers.failure, workers=1))
    failed = sorted(r[0] for r in results if r[2] == -1)
    assert sorted(r[0] for r in results) == list(range(10))
    assert 3 in failed and 5 in failed and len(failed) <= 3
    assert all(r[1] == r[0] ** 2 for r in results if r[0] > 6)


def test_workers_that_keep_dying_fail_the_rest_without_hanging() -> None:
    results = list(
        map_in_processes(range(20), pool_helpers.always_crash, pool_helpers.failure, workers=2, max_restarts=1)
    )
    assert sorted(r[0] for r in results) == list(range(20))
    assert all(r[2] == -1 for r in results)
    assert any("died 2 times" in r[1] for r in results)
