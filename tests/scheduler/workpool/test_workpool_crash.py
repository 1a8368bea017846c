"""SIGKILL a worker process mid-item: its items are redelivered to the other worker after
``ack_wait`` and complete; finished items never run again; on_complete once per item."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.scheduler.workpool.conftest import PoolFactory, Recorder, read_lines

ACK_WAIT = 2.0


async def test_sigkill_mid_item_redelivers_to_the_live_worker(
        pool_factory: PoolFactory, recorder: Recorder, spawn_worker: Any,
        tmp_path: Path) -> None:
    pool = pool_factory(max_parallelism=4, ack_wait=ACK_WAIT)
    await pool.setup()
    a, b = await asyncio.gather(spawn_worker(pool.name, ack_wait=ACK_WAIT, concurrency=2),
                                spawn_worker(pool.name, ack_wait=ACK_WAIT, concurrency=2))
    ids = [await pool.enqueue("sleep", {"s": 0.6}, on_complete="record_done")
           for _ in range(10)]

    def a_running(evs: list[Any]) -> bool:
        return any(e.type == "work_started" and e.envelope.data["worker"] == a.worker_id
                   for e in evs)

    evs = await recorder.until(a_running)
    a.kill()
    killed_at = time.time()
    await a.proc.wait()
    # What A had started and not finished when it died: at most its 2 local slots.
    in_flight = {e.envelope.aggregate_id for e in evs if e.type == "work_started"
                 and e.envelope.data["worker"] == a.worker_id} - {
        e.envelope.aggregate_id for e in evs if e.type in ("work_completed", "work_failed")}
    assert 1 <= len(in_flight) <= 2

    evs = await recorder.until(
        lambda evs: sum(e.type == "work_completion_handled" for e in evs) >= len(ids),
        timeout=30)
    for wid in ids:
        status = await pool.status(wid)
        assert status.state == "finished" and status.result is not None
        assert status.result.kind == "success" and status.completion_handled
    runs = Counter(w for w, _ in read_lines(tmp_path / "runs.log"))
    assert set(runs) == set(ids)
    extra = {w for w, n in runs.items() if n > 1}
    # Only what A had in flight ran again, once (A may die before its function began).
    assert extra <= in_flight and all(runs[w] == 2 for w in extra)
    completions = read_lines(tmp_path / "completions.log")
    assert sorted(w for w, _ in completions) == sorted(ids)  # exactly once each
    assert {k for _, k in completions} == {"success"}
    for wid in in_flight:
        kinds = [(e.type, e.envelope.data.get("error_type"), e.envelope.data.get("worker"))
                 for e in recorder.of(wid) if e.type in ("work_started", "work_failed")]
        assert kinds[0] == ("work_started", None, a.worker_id)
        assert kinds[1] == ("work_failed", "WorkerLost", None)
        assert kinds[2] == ("work_started", None, b.worker_id)
        restarted = [e for e in recorder.of(wid) if e.type == "work_started"][1]
        redelivery = restarted.envelope.occurred_at.timestamp() - killed_at
        print(f"redelivered {redelivery:.2f}s after SIGKILL (ack_wait {ACK_WAIT}s)")
        assert redelivery < ACK_WAIT + 2.0
