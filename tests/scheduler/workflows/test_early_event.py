"""An event sent before the run reaches its ``await_event`` is consumed by that step,
which is journaled (opened, then completed): a later replay returns it again."""

from __future__ import annotations

from typing import Any

from scheduler.workflows import IdempotencyKey, Step, WorkflowClient, Workflows

from .conftest import WorkerFactory


async def test_an_event_sent_early_is_journaled_and_replayed(
        workflows: Workflows, client: WorkflowClient, worker_factory: WorkerFactory) -> None:
    def first(_: Any, key: IdempotencyKey) -> int:
        return 1

    @workflows.define("early")
    async def early(step: Step, args: Any) -> Any:
        await step.run(first)
        got = await step.await_event("go")
        await step.sleep(0.05)  # suspends: the next execution replays the event step
        return got

    run_id = await client.start("early")
    await client.send_event(run_id, "go", "ready")
    async with worker_factory():
        st = await client.wait(run_id, timeout=20)
    assert (st.state, st.result) == ("completed", "ready")
    steps = await client.list_steps(run_id)
    assert [(s.kind, s.name, s.status, s.result) for s in steps] == [
        ("function", "first", "completed", 1), ("event", "go", "completed", "ready"),
        ("sleep", "sleep", "completed", None)]
