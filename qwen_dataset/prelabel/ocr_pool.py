"""Frames of a batch through OCR worker processes: how many, how many threads each, and the pool.

**How many.** ONNX Runtime runs a model's operators on ``threads`` intra-op threads; around them
each frame spends a good share of its time in single-threaded Python and OpenCV (image decoding,
resizing, box post-processing, per-line crops). Several processes with few threads each keep
every core busy where one process with many threads waits on its serial parts. The plan never
oversubscribes: ``workers x threads <= cores`` (:func:`plan_processes`).

**The pool.** :func:`map_in_processes` runs ``work(item)`` in ``workers`` spawned processes and
yields results as they complete (any order). At most ``2 x workers`` items are in flight, so a
10,000-frame batch is never queued whole. An item whose work raised yields ``on_failure(item,
exc)`` instead; a worker process that dies (a crash in native code) fails only the items in flight
at that moment, the pool is rebuilt and the rest go on, up to ``max_restarts`` times; after that
every remaining item yields a failure. Nothing here raises for one bad item.

Processes are started with ``spawn``, never ``fork``: the parent (a Dagster run worker, a test
runner) may hold ONNX Runtime and OpenCV thread pools, which a forked child inherits in a broken
state. As always with ``spawn``, a script that calls this must keep its work under
``if __name__ == "__main__":``: each worker imports the main module afresh.
"""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

IN_FLIGHT_PER_WORKER = 2
_END: Any = object()
MAX_RESTARTS = 3


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers and taskset narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@dataclasses.dataclass(frozen=True)
class ProcessPlan:
    """Worker processes and ONNX Runtime intra-op threads per process."""

    workers: int
    threads: int

    @property
    def cores(self) -> int:
        return self.workers * self.threads


def plan_processes(workers: int = 0, threads: int = 1, cores: int | None = None) -> ProcessPlan:
    """Fit ``workers`` processes of ``threads`` threads into ``cores`` (0 = choose).

    * ``workers=0``: as many processes as fit, ``cores // threads`` (at least one);
    * ``threads=0``: the cores shared out, ``cores // workers`` (at least one);
    * both given but too many: workers are capped at ``cores``, then threads at ``cores // workers``.

    >>> plan_processes(0, 1, cores=16), plan_processes(2, 0, cores=16), plan_processes(4, 8, cores=8)
    (ProcessPlan(workers=16, threads=1), ProcessPlan(workers=2, threads=8), ProcessPlan(workers=4, threads=2))
    """
    if workers < 0 or threads < 0:
        raise ValueError(f"workers and threads must be 0 (choose) or positive, got {workers} and {threads}")
    cores = max(1, cores if cores is not None else available_cores())
    if workers == 0:
        threads = min(threads or 1, cores)
        workers = max(1, cores // threads)
    workers = min(workers, cores)
    threads = max(1, min(threads or cores, cores // workers))
    return ProcessPlan(workers, threads)


def map_in_processes(
    items: Iterable[Item],
    work: Callable[[Item], Result],
    on_failure: Callable[[Item, BaseException], Result],
    workers: int,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple[Any, ...] = (),
    max_restarts: int = MAX_RESTARTS,
) -> Iterator[Result]:
    """``work(item)`` for every item in ``workers`` processes; one result per item, in any order.

    ``work``, ``initializer`` and the items must pickle (module-level functions, plain data).
    """
    context = multiprocessing.get_context("spawn")
    pending = iter(items)
    limit = max(1, workers) * IN_FLIGHT_PER_WORKER

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=max(1, workers), mp_context=context, initializer=initializer, initargs=initargs
        )

    pool = new_pool()
    in_flight: dict[Future[Result], Item] = {}
    restarts = 0
    try:
        while True:
            broken = False
            while len(in_flight) < limit:
                item = next(pending, _END)
                if item is _END:
                    break
                try:
                    in_flight[pool.submit(work, item)] = item
                except BrokenProcessPool:
                    # The pool broke before this item ran: it goes to the next pool, unharmed.
                    pending = itertools.chain([item], pending)
                    broken = True
                    break
            if not in_flight and not broken:
                return
            done = wait(in_flight, return_when=FIRST_COMPLETED)[0] if in_flight else set()
            for future in done:
                item = in_flight.pop(future)
                try:
                    yield future.result()
                except BrokenProcessPool as exc:
                    broken = True
                    yield on_failure(item, exc)
                except Exception as exc:
                    yield on_failure(item, exc)
            if broken:
                # What was still in flight dies with the pool (bar a result that just made it).
                for future, item in list(in_flight.items()):
                    error = future.exception()
                    yield on_failure(item, error) if error is not None else future.result()
                in_flight.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                restarts += 1
                if restarts > max_restarts:
                    died = BrokenProcessPool(f"worker processes died {restarts} times; not starting more")
                    for item in pending:
                        yield on_failure(item, died)
                    return
                pool = new_pool()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
