"""A run's steps are journaled once each, in order, before the next starts; results come
back from the journal on replay."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from events import EventStore
from events.workflow_events import run_aggregate
from scheduler.workflows import (
    IdempotencyKey,
    RunOutcome,
    Step,
    WorkflowClient,
    WorkflowConfig,
    Workflows,
)

from .conftest import WorkerFactory


async def test_multi_step_workflow_completes_with_each_step_journaled_once(
        workflows: Workflows, client: WorkflowClient, worker_factory: WorkerFactory,
        store: EventStore) -> None:
    keys: list[str] = []

    def add(args: dict[str, int], key: IdempotencyKey) -> int:
        keys.append(str(key))
        return args["a"] + args["b"]

    @workflows.define("adder")
    async def adder(step: Step, args: Any) -> int:
        x = await step.run(add, {"a": args, "b": 1})
        y = await step.run(add, {"a": x, "b": 2}, name="second")
        return int(await step.run(add, {"a": y, "b": 3}, name="third"))

    async with worker_factory():
        run_id = await client.start("adder", 10)
        st = await client.wait(run_id, timeout=10)
    assert (st.state, st.result) == ("completed", 16)
    assert keys == [f"{run_id}:1", f"{run_id}:2", f"{run_id}:3"]
    types = [r.type for r in await store.read(run_aggregate(run_id))]
    assert types == ["workflow_started", *["step_started", "step_completed"] * 3,
                     "workflow_completed", "completion_handled"]
    steps = await client.list_steps(run_id)
    assert [(s.step_no, s.name, s.status, s.attempts) for s in steps] == [
        (1, "add", "completed", 1), (2, "second", "completed", 1), (3, "third", "completed", 1)]
    runs = await client.list(name="adder")
    assert [r.run_id for r in runs] == [run_id]


async def test_parallel_steps_are_numbered_by_call_order_and_replayed(
        workflows: Workflows, client: WorkflowClient, worker_factory: WorkerFactory) -> None:
    calls: list[int] = []

    async def slow(n: int, key: IdempotencyKey) -> int:
        calls.append(n)
        await asyncio.sleep(0.05 * (3 - n))  # finish in reverse order
        return n * 10

    @workflows.define("fanout")
    async def fanout(step: Step, args: Any) -> list[int]:
        results = await asyncio.gather(*(step.run(slow, n, name=f"p{n}") for n in range(3)))
        await step.sleep(0.2)  # suspends: the next execution replays the gather
        return [int(r) for r in results]

    async with worker_factory():
        run_id = await client.start("fanout")
        st = await client.wait(run_id, timeout=10)
    assert (st.state, st.result) == ("completed", [0, 10, 20])
    assert sorted(calls) == [0, 1, 2]  # once each, though the handler ran twice
    steps = await client.list_steps(run_id)
    assert [(s.step_no, s.name, s.result) for s in steps] == [
        (1, "p0", 0), (2, "p1", 10), (3, "p2", 20), (4, "sleep", None)]


async def test_child_workflow_result_is_returned_to_the_parent(
        workflows: Workflows, client: WorkflowClient, worker_factory: WorkerFactory) -> None:
    def double(n: int, key: IdempotencyKey) -> int:
        return n * 2

    @workflows.define("child")
    async def child(step: Step, args: Any) -> int:
        return int(await step.run(double, args))

    @workflows.define("parent")
    async def parent(step: Step, args: Any) -> int:
        return int(await step.run_workflow("child", args)) + 1

    async with worker_factory():
        run_id = await client.start("parent", 20)
        st = await client.wait(run_id, timeout=10)
    assert (st.state, st.result) == ("completed", 41)
    (s,) = await client.list_steps(run_id)
    assert (s.kind, s.name, s.status, s.result) == ("workflow", "child", "completed", 40)


async def test_on_complete_runs_once_with_its_key_and_again_after_restart(
        workflows: Workflows, client: WorkflowClient, worker_factory: WorkerFactory,
        store: EventStore) -> None:
    outcomes: list[RunOutcome] = []
    runs: list[int] = []

    def work(n: int, key: IdempotencyKey) -> int:
        runs.append(key.step_no)
        return n

    @workflows.define("job")
    async def job(step: Step, args: Any) -> int:
        a = await step.run(work, 1)
        b = await step.run(work, 2)
        return int(a) + int(b)

    @workflows.on_complete("record")
    async def record(outcome: RunOutcome) -> None:
        outcomes.append(outcome)

    async with worker_factory():
        run_id = await client.start("job", on_complete="record", context={"who": "me"})
        await client.wait(run_id, timeout=10)
        assert [(o.status, o.result, o.context) for o in outcomes] == [
            ("completed", 3, {"who": "me"})]
        await client.restart(run_id, from_step=2)
        st = await client.wait(run_id, timeout=10)
    assert (st.state, st.generation) == ("completed", 1)
    assert runs == [1, 2, 2]  # step 1 kept its result across the restart
    assert len({o.key for o in outcomes}) == len(outcomes) == 2
    types = [r.type for r in await store.read(run_aggregate(run_id))]
    assert types.count("completion_handled") == 2


async def test_cancel_stops_the_run_at_its_next_step_boundary(
        workflows: Workflows, client: WorkflowClient, worker_factory: WorkerFactory) -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    ran: list[str] = []

    async def first(_: Any, key: IdempotencyKey) -> str:
        entered.set()
        await release.wait()
        ran.append("first")
        return "ok"

    def second(_: Any, key: IdempotencyKey) -> None:
        ran.append("second")

    @workflows.define("cancelable")
    async def cancelable(step: Step, args: Any) -> None:
        await step.run(first)
        await step.run(second)

    @workflows.define("waiting")
    async def waiting(step: Step, args: Any) -> Any:
        return await step.await_event("never")

    async with worker_factory():
        run_id = await client.start("cancelable")
        await asyncio.wait_for(entered.wait(), 10)
        await client.cancel(run_id, "changed my mind")
        release.set()
        st = await client.wait(run_id, timeout=10)
        waiting_id = await client.start("waiting")
        await _until_suspended(client, waiting_id)
        await client.cancel(waiting_id)
        st2 = await client.wait(waiting_id, timeout=10)
    assert st.state == "canceled" and ran == ["first"]
    assert [s.status for s in await client.list_steps(run_id)] == ["completed"]
    assert st2.state == "canceled"


async def test_result_and_journal_limits_fail_with_clear_errors(
        workflows: Workflows, client: WorkflowClient, worker_factory: WorkerFactory,
        wf_config: WorkflowConfig) -> None:
    def big(_: Any, key: IdempotencyKey) -> str:
        return "x" * (wf_config.max_result_bytes + 1)

    def noop(_: Any, key: IdempotencyKey) -> None:
        return None

    @workflows.define("too-big")
    async def too_big(step: Step, args: Any) -> Any:
        return await step.run(big)

    @workflows.define("too-long")
    async def too_long(step: Step, args: Any) -> None:
        for _ in range(5):
            await step.run(noop)

    async with worker_factory():
        big_id = await client.start("too-big")
        st = await client.wait(big_id, timeout=10)
    assert st.state == "failed" and st.error is not None
    assert st.error.code == "step_failed" and "result_too_large" in st.error.message
    short = dataclasses.replace(wf_config, max_steps=3)
    async with worker_factory(config=short):
        long_id = await client.start("too-long")
        st = await client.wait(long_id, timeout=10)
    assert st.state == "failed" and st.error is not None
    assert st.error.code == "journal_too_large" and "step 4" in st.error.message


async def _until_suspended(client: WorkflowClient, run_id: str) -> None:
    """Bounded wait for the run's ``run_suspended`` (follows its events)."""
    from events.workflow_events import run_aggregate as agg

    async with asyncio.timeout(10):
        async for rec in client.store.watch(agg(run_id)):
            if rec.type == "run_suspended":
                return
