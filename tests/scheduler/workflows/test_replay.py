"""Replay and determinism: a resumed run gets its journaled results back, a changed step
sequence fails the run as ``nondeterministic``, ``patched`` and versions guard changes."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from scheduler.workflows import IdempotencyKey, Step, WorkflowClient, Workflows

from .conftest import WorkerFactory
from .test_basics import _until_suspended


async def test_replay_after_a_worker_restart_skips_completed_steps(
        client: WorkflowClient, worker_factory: WorkerFactory) -> None:
    runs: Counter[int] = Counter()
    entered, hold = asyncio.Event(), asyncio.Event()

    async def effect(n: int, key: IdempotencyKey) -> int:
        runs[n] += 1
        if n == 3 and not hold.is_set():
            entered.set()
            await asyncio.Event().wait()  # stuck until the worker stops
        return n

    async def handler(step: Step, args: Any) -> list[int]:
        return [int(await step.run(effect, n)) for n in range(1, 5)]

    first, second = Workflows(), Workflows()
    first.define("replayed")(handler)
    second.define("replayed")(handler)
    async with worker_factory(first):
        run_id = await client.start("replayed")
        await asyncio.wait_for(entered.wait(), 10)
    hold.set()
    async with worker_factory(second):
        st = await client.wait(run_id, timeout=10)
    assert (st.state, st.result) == ("completed", [1, 2, 3, 4])
    assert runs == {1: 1, 2: 1, 3: 2, 4: 1}  # only the step in flight ran again


def _noop(n: Any, key: IdempotencyKey) -> Any:
    return n


async def test_a_changed_step_sequence_fails_as_nondeterministic_unless_patched(
        client: WorkflowClient, worker_factory: WorkerFactory) -> None:
    old, changed, patched = Workflows(), Workflows(), Workflows()

    async def v1(step: Step, args: Any) -> str:
        await step.run(_noop, 1, name="charge")
        await step.sleep(0.3)
        return "old"

    async def v1_changed(step: Step, args: Any) -> str:
        await step.run(_noop, 1, name="reserve")  # was "charge"
        await step.sleep(0.3)
        return "changed"

    async def v1_patched(step: Step, args: Any) -> str:
        if step.patched("reserve-first"):
            await step.run(_noop, 1, name="reserve")
        else:
            await step.run(_noop, 1, name="charge")
        await step.sleep(0.3)
        return "patched"

    # two workflows with the same code, so each later worker sees only its own runs
    for name in ("evolving", "guarded"):
        old.define(name)(v1)
    changed.define("evolving")(v1_changed)
    patched.define("guarded")(v1_patched)
    async with worker_factory(old):
        broken, guarded = await client.start("evolving"), await client.start("guarded")
        await _until_suspended(client, broken)
        await _until_suspended(client, guarded)
    async with worker_factory(changed):
        st = await client.wait(broken, timeout=10)
    assert st.state == "failed" and st.error is not None
    assert st.error.code == "nondeterministic" and "step 1" in st.error.message
    assert "'charge'" in st.error.message
    async with worker_factory(patched):
        st = await client.wait(guarded, timeout=10)
        fresh = await client.start("guarded")
        st_fresh = await client.wait(fresh, timeout=10)
    assert (st.state, st.result) == ("completed", "patched")
    assert [(s.kind, s.name) for s in await client.list_steps(guarded)] == [
        ("function", "charge"), ("sleep", "sleep")]
    assert [(s.kind, s.name) for s in await client.list_steps(fresh)] == [
        ("patch", "reserve-first"), ("function", "reserve"), ("sleep", "sleep")]
    assert st_fresh.result == "patched"


async def test_a_new_version_leaves_old_runs_on_the_old_handler(
        client: WorkflowClient, worker_factory: WorkerFactory) -> None:
    registry = Workflows()

    @registry.define("versioned", version=1)
    async def v1(step: Step, args: Any) -> str:
        await step.run(_noop, 1, name="charge")
        return "v1"

    async with worker_factory(registry):
        old = await client.start("versioned", version=1)
        await client.wait(old, timeout=10)

    @registry.define("versioned", version=2)
    async def v2(step: Step, args: Any) -> str:
        await step.run(_noop, 1, name="reserve")
        return "v2"

    client.workflows = registry
    async with worker_factory(registry):
        new = await client.start("versioned")
        assert (await client.wait(new, timeout=10)).result == "v2"
        await client.restart(old)  # an old run replays its own version's handler
        assert (await client.wait(old, timeout=10)).result == "v1"
