"""Durable timers: retry backoff, event waits with timeouts and sleeps are recorded due
times plus a redelivery of the run, so they survive a worker restart."""

from __future__ import annotations

from typing import Any

from events import EventStore
from events.workflow_events import run_aggregate
from scheduler.workflows import (
    EventTimeout,
    IdempotencyKey,
    RetryPolicy,
    Step,
    WorkflowClient,
    Workflows,
)

from .conftest import WorkerFactory
from .test_basics import _until_suspended


async def test_a_failing_step_is_retried_with_backoff_then_fails_the_run(
        workflows: Workflows, client: WorkflowClient, worker_factory: WorkerFactory,
        store: EventStore) -> None:
    attempts: list[str] = []

    def flaky(_: Any, key: IdempotencyKey) -> None:
        attempts.append(str(key))
        raise RuntimeError(f"boom {len(attempts)}")

    @workflows.define("flaky")
    async def handler(step: Step, args: Any) -> None:
        await step.run(flaky, retry=RetryPolicy(max_attempts=3, initial_backoff=0.2, base=2))

    async with worker_factory():
        run_id = await client.start("flaky")
        st = await client.wait(run_id, timeout=15)
    assert st.state == "failed" and st.error is not None and "boom 3" in st.error.message
    assert len(attempts) == 3 and len(set(attempts)) == 1  # one idempotency key
    recs = [r for r in await store.read(run_aggregate(run_id))
            if r.type in ("step_started", "step_failed")]
    assert [r.type for r in recs] == ["step_started", "step_failed"] * 3
    failed = [r for r in recs if r.type == "step_failed"]
    assert [r.envelope.data["will_retry"] for r in failed] == [True, True, False]
    for n, backoff in ((0, 0.2), (1, 0.4)):
        retry_at = failed[n].envelope.data["retry_at"]
        gap = (recs[2 * n + 2].envelope.occurred_at - failed[n].envelope.occurred_at)
        assert gap.total_seconds() >= backoff - 0.01, (n, gap, retry_at)


async def test_await_event_receives_a_sent_event_and_times_out_otherwise(
        workflows: Workflows, client: WorkflowClient, worker_factory: WorkerFactory) -> None:
    @workflows.define("approval")
    async def approval(step: Step, args: Any) -> Any:
        try:
            return await step.await_event("approve", timeout=args)
        except EventTimeout:
            return "timed out"

    async with worker_factory():
        waits = await client.start("approval", 30)
        await _until_suspended(client, waits)
        await client.send_event(waits, "approve", {"ok": True})
        st = await client.wait(waits, timeout=10)
        quick = await client.start("approval", 0.3)
        st2 = await client.wait(quick, timeout=10)
    assert (st.state, st.result) == ("completed", {"ok": True})
    assert (st2.state, st2.result) == ("completed", "timed out")
    (s,) = await client.list_steps(quick)
    assert s.status == "failed" and s.error is not None and s.error.code == "event_timeout"


async def test_a_sleep_survives_a_worker_restart_and_wakes_at_its_due_time(
        workflows: Workflows, client: WorkflowClient, worker_factory: WorkerFactory,
        store: EventStore) -> None:
    effects: list[int] = []

    def effect(n: int, key: IdempotencyKey) -> int:
        effects.append(n)
        return n

    @workflows.define("sleeper")
    async def sleeper(step: Step, args: Any) -> int:
        await step.run(effect, 1)
        await step.sleep(1.5)
        return int(await step.run(effect, 2))

    async with worker_factory():
        run_id = await client.start("sleeper")
        await _until_suspended(client, run_id)
    # the first worker is gone; nothing in memory remembers the sleep
    async with worker_factory():
        st = await client.wait(run_id, timeout=10)
    assert (st.state, st.result) == ("completed", 2) and effects == [1, 2]
    recs = await store.read(run_aggregate(run_id))
    (sleep,) = [r for r in recs if r.type == "sleep_scheduled"]
    woke = next(r for r in recs if r.type == "step_completed" and r.seq > sleep.seq)
    wake_at = sleep.event.wake_at  # type: ignore[attr-defined]
    assert woke.envelope.occurred_at >= wake_at
    assert (woke.envelope.occurred_at - wake_at).total_seconds() < 1.0
