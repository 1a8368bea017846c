"""The global parallelism limit: across two worker processes, changed live, and 0 pausing.

Concurrency is measured from the log: each attempt runs between its ``work_started`` and
its ``work_completed`` event, both appended while the worker holds the message
unacknowledged, so these intervals lie inside the server-side slots they occupy."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from scheduler.workpool import WorkContext
from tests.scheduler.workpool.conftest import (
    PoolFactory,
    Recorder,
    attempt_intervals,
    max_overlap,
)


def completed(n: int) -> Any:
    return lambda evs: sum(e.type == "work_completed" for e in evs) >= n


async def test_limit_holds_across_two_worker_processes(
        pool_factory: PoolFactory, recorder: Recorder, spawn_worker: Any) -> None:
    pool = pool_factory(max_parallelism=2)
    await pool.setup()
    a, b = await asyncio.gather(spawn_worker(pool.name, concurrency=3),
                                spawn_worker(pool.name, concurrency=3))
    for _ in range(12):
        await pool.enqueue("sleep", {"s": 0.25})
    evs = await recorder.until(completed(12), timeout=30)
    intervals = attempt_intervals(evs)
    assert len(intervals) == 12
    assert max_overlap([(s, e) for s, e, _, _ in intervals]) == 2
    assert {w for *_, w in intervals} == {a.worker_id, b.worker_id}


async def test_max_parallelism_changes_live_and_zero_pauses(
        pool_factory: PoolFactory, recorder: Recorder) -> None:
    pool = pool_factory(max_parallelism=1)

    @pool.function("nap")
    async def nap(ctx: WorkContext, args: Any) -> None:
        await asyncio.sleep(0.2)

    async with pool.worker(concurrency=6), pool.worker(concurrency=6):
        for _ in range(12):
            await pool.enqueue("nap")
        await recorder.until(completed(2))
        changed_at = datetime.now(UTC).timestamp()  # before: the limit is 1 until here
        await pool.set_max_parallelism(3)
        assert await pool.max_parallelism() == 3
        evs = await recorder.until(completed(12))
        spans = [(s, e) for s, e, *_ in attempt_intervals(evs)]
        assert max_overlap([(s, min(e, changed_at)) for s, e in spans if s < changed_at]) == 1
        assert max_overlap(spans) == 3

        await pool.set_max_parallelism(0)
        assert await pool.max_parallelism() == 0
        paused = [await pool.enqueue("nap") for _ in range(4)]
        # Nothing starts while paused: wait (bounded) for a start that must not come.
        try:
            await recorder.until(lambda evs: any(
                e.type == "work_started" and e.envelope.aggregate_id in paused for e in evs),
                timeout=1.0)
            raise AssertionError("an item started while the pool was paused")
        except TimeoutError:
            pass
        assert [(await pool.status(w)).state for w in paused] == ["pending"] * 4
        await pool.set_max_parallelism(2)
        evs = await recorder.until(completed(16))
    late = [(s, e) for s, e, w, _ in attempt_intervals(evs) if w in paused]
    assert len(late) == 4 and max_overlap(late) == 2
