"""One process: success, retries with durable backoff, NonRetryableError, idempotent
enqueue, cancel and cancel_all, and run_after surviving a worker restart."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from events import NotFound
from scheduler.workpool import (
    CompletionContext,
    NonRetryableError,
    RetryPolicy,
    WorkContext,
    Workpool,
)
from tests.scheduler.workpool.conftest import PoolFactory, Recorder


def completions_of(pool: Workpool) -> list[CompletionContext]:
    done: list[CompletionContext] = []

    @pool.function("done")
    async def record(ctx: CompletionContext) -> None:
        done.append(ctx)

    return done


def handled(n: int) -> Any:
    return lambda evs: sum(e.type == "work_completion_handled" for e in evs) >= n


async def test_success_runs_once_and_on_complete_runs_exactly_once(
        pool_factory: PoolFactory, recorder: Recorder) -> None:
    pool = pool_factory(max_parallelism=4)
    calls: list[tuple[str, int, str]] = []

    @pool.function("add")
    async def add(ctx: WorkContext, args: dict[str, int]) -> int:
        calls.append((ctx.work_id, ctx.attempt, ctx.idempotency_key))
        return args["a"] + args["b"]

    done = completions_of(pool)
    wid = await pool.enqueue("add", {"a": 2, "b": 3}, on_complete="done", context={"k": 1})
    assert (await pool.status(wid)).state == "pending"
    async with pool.worker():
        await recorder.until(handled(1))
    status = await pool.status(wid)
    assert status.state == "finished" and status.attempts == 1 and status.previous_attempts == 0
    assert status.result is not None and status.result.kind == "success"
    assert status.result.return_value == 5 and status.completion_handled
    assert calls == [(wid, 1, f"{wid}:1")]
    assert [(d.work_id, d.context, d.result.return_value, d.idempotency_key) for d in done] == [
        (wid, {"k": 1}, 5, f"{wid}:complete")]
    assert [e.type for e in recorder.of(wid)] == [
        "work_enqueued", "work_started", "work_completed", "work_completion_handled"]
    with pytest.raises(NotFound):
        await pool.status("nosuchwork")


async def test_enqueue_with_a_work_id_is_idempotent(pool_factory: PoolFactory,
                                                    recorder: Recorder) -> None:
    pool = pool_factory()
    runs: list[str] = []

    @pool.function("f")
    async def f(ctx: WorkContext, args: Any) -> None:
        runs.append(ctx.work_id)

    ids = [await pool.enqueue("f", {}, work_id="same-item") for _ in range(3)]
    async with pool.worker():
        await recorder.until(lambda evs: any(e.type == "work_completed" for e in evs))
        assert await pool.enqueue("f", {}, work_id="same-item") == "same-item"
    assert ids == ["same-item"] * 3
    assert runs == ["same-item"]
    assert recorder.count("work_enqueued") == 1


async def test_failures_retry_with_durable_backoff_then_fail(pool_factory: PoolFactory,
                                                            recorder: Recorder) -> None:
    pool = pool_factory(retry=RetryPolicy(max_attempts=3, initial_backoff=0.2, base=2.0))
    attempts: list[int] = []

    @pool.function("flaky")
    async def flaky(ctx: WorkContext, args: Any) -> None:
        attempts.append(ctx.attempt)
        raise RuntimeError(f"boom {ctx.attempt}")

    done = completions_of(pool)
    wid = await pool.enqueue(flaky, None, on_complete="done")
    async with pool.worker():
        await recorder.until(handled(1))
    assert attempts == [1, 2, 3]
    evs = recorder.of(wid)
    assert [e.type for e in evs] == ["work_enqueued"] + ["work_started", "work_failed"] * 3 + [
        "work_completion_handled"]
    failed = [e for e in evs if e.type == "work_failed"]
    started = [e for e in evs if e.type == "work_started"]
    assert [f.envelope.data["will_retry"] for f in failed] == [True, True, False]
    for n, want in ((0, 0.2), (1, 0.4)):  # backoff = 0.2 * 2 ** (attempt - 1)
        gap = (started[n + 1].envelope.occurred_at - failed[n].envelope.occurred_at)
        assert want - 0.02 <= gap.total_seconds() < want + 0.5, (n, gap)
    status = await pool.status(wid)
    assert status.state == "finished" and status.previous_attempts == 3
    assert status.result is not None and status.result.kind == "failed"
    assert status.result.error == "RuntimeError: boom 3"
    assert [d.result.kind for d in done] == ["failed"]


async def test_non_retryable_error_fails_at_once(pool_factory: PoolFactory,
                                                recorder: Recorder) -> None:
    pool = pool_factory(retry=RetryPolicy(max_attempts=5, initial_backoff=0.01))

    @pool.function("bad")
    async def bad(ctx: WorkContext, args: Any) -> None:
        raise NonRetryableError("no point")

    done = completions_of(pool)
    wid = await pool.enqueue("bad", None, on_complete="done")
    async with pool.worker():
        await recorder.until(handled(1))
    status = await pool.status(wid)
    assert status.attempts == 1 and status.result is not None
    assert status.result.kind == "failed" and "no point" in (status.result.error or "")
    assert [d.result.kind for d in done] == ["failed"]


async def test_cancel_pending_and_running_items(pool_factory: PoolFactory,
                                               recorder: Recorder) -> None:
    pool = pool_factory(ack_wait=1.5)  # heartbeats (and cancel checks) every 0.5 s
    seen_cancel: list[str] = []
    started = asyncio.Event()

    @pool.function("slow")
    async def slow(ctx: WorkContext, args: Any) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen_cancel.append(ctx.work_id)
            raise

    done = completions_of(pool)
    later = await pool.enqueue("slow", None, on_complete="done", run_after=30)
    async with pool.worker():
        now = await pool.enqueue("slow", None, on_complete="done")
        async with asyncio.timeout(10):
            await started.wait()
        assert (await pool.status(now)).state == "running"
        assert await pool.cancel(later) and await pool.cancel(now)
        assert not await pool.cancel(now)  # already finished (canceled)
        await recorder.until(handled(2))
    for wid in (later, now):
        status = await pool.status(wid)
        assert status.state == "finished" and status.result is not None
        assert status.result.kind == "canceled"
    assert (await pool.status(later)).attempts == 0
    assert seen_cancel == [now]
    assert sorted((d.work_id, d.result.kind) for d in done) == sorted(
        [(later, "canceled"), (now, "canceled")])
    assert recorder.count("work_completed") == 0


async def test_cancel_all_cancels_every_unfinished_item(pool_factory: PoolFactory,
                                                       recorder: Recorder) -> None:
    pool = pool_factory()

    @pool.function("f")
    async def f(ctx: WorkContext, args: Any) -> None:
        raise AssertionError("must not run")

    done = completions_of(pool)
    ids = [await pool.enqueue("f", i, on_complete="done", run_after=30 if i % 2 else None)
           for i in range(6)]
    assert await pool.cancel_all() == 6  # no worker yet: all still queued or scheduled
    async with pool.worker():
        await recorder.until(handled(6))
    for wid in ids:
        status = await pool.status(wid)
        assert status.result is not None and status.result.kind == "canceled"
        assert status.attempts == 0
    assert sorted(d.work_id for d in done) == sorted(ids)
    assert await pool.cancel_all() == 0


async def test_run_after_is_durable_across_a_worker_restart_and_holds_no_slot(
        pool_factory: PoolFactory, recorder: Recorder) -> None:
    pool = pool_factory(max_parallelism=1)
    ran: list[str] = []

    @pool.function("f")
    async def f(ctx: WorkContext, args: Any) -> str:
        ran.append(args)
        return str(args)

    delayed = await pool.enqueue("f", "delayed", run_after=1.5)
    async with pool.worker():
        # The only slot is free while the delayed item waits: an immediate item runs.
        await pool.enqueue("f", "now")
        await recorder.until(lambda evs: sum(e.type == "work_completed" for e in evs) >= 1)
        assert ran == ["now"]
    # No worker at all for a while, then a new worker (new pool object) picks it up.
    pool2 = Workpool(pool.store, pool.name)
    pool2.register(f, "f")
    async with pool2.worker():
        await recorder.until(lambda evs: sum(e.type == "work_completed" for e in evs) >= 2)
    assert ran == ["now", "delayed"]
    evs = recorder.of(delayed)
    gap = evs[1].envelope.occurred_at - evs[0].envelope.occurred_at
    assert evs[1].type == "work_started" and gap.total_seconds() >= 1.5 - 0.02
