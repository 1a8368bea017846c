"""The ``workflows`` and ``workflow_steps`` views: runs and steps folded from the runs'
events (completed, failed, canceled, retried, waiting, child, restarted), and a clean
rebuild gives the same rows."""

from __future__ import annotations

import json
from contextlib import suppress
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

from events import EventStore, new_id
from projections.projector import Projector, ProjectorConfig, run_until_caught_up
from projections.views import VIEWS
from scheduler.workflows import (
    IdempotencyKey,
    RetryPolicy,
    Step,
    WorkflowClient,
    WorkflowConfig,
    Workflows,
    WorkflowWorker,
)
from threadlog.embedded_nats import EmbeddedNats

TABLES = ("workflows", "workflow_steps")


def _registry(failures: dict[str, int]) -> Workflows:
    wfs = Workflows()

    def flaky(n: int, key: IdempotencyKey) -> int:
        failures[str(key)] = failures.get(str(key), 0) + 1
        if failures[str(key)] == 1:
            raise RuntimeError("first attempt fails")
        return n + 1

    def boom(_: Any, key: IdempotencyKey) -> None:
        raise ValueError("always")

    @wfs.define("child")
    async def child(step: Step, args: Any) -> int:
        return int(await step.run(flaky, args, retry=RetryPolicy(3, initial_backoff=0.01)))

    @wfs.define("parent")
    async def parent(step: Step, args: Any) -> Any:
        got = await step.run_workflow("child", args)
        return {"child": got, "event": await step.await_event("go")}

    @wfs.define("broken")
    async def broken(step: Step, args: Any) -> None:
        await step.run(boom)

    @wfs.define("waits")
    async def waits(step: Step, args: Any) -> None:
        await step.await_event("never")

    return wfs


async def test_runs_and_steps_are_projected_and_a_rebuild_gives_the_same_rows(
        store: EventStore, nc: NATS, projector: Projector, nats_server: EmbeddedNats,
        tmp_path: Path) -> None:
    tag = new_id()[:10]
    cfg = WorkflowConfig(stream=f"WF{tag.upper()}", prefix=f"wf{tag}.run", ack_wait=1.0)
    wfs = _registry({})
    client = WorkflowClient(store, cfg, wfs)
    await client.setup()
    try:
        async with WorkflowWorker(store, wfs, cfg):
            parent = await client.start("parent", 1, user_id="u1")
            broken = await client.start("broken", user_id="u2")
            waits = await client.start("waits")
            assert (await client.wait(broken, 20)).state == "failed"
            await client.send_event(parent, "go", "yes")
            assert (await client.wait(parent, 20)).state == "completed"
            await client.cancel(waits, "stop")
            assert (await client.wait(waits, 20)).state == "canceled"
            await client.restart(broken, from_step=1)
            assert (await client.wait(broken, 20)).generation == 1
            runs = await client.list(limit=10)
    finally:
        await nc.jetstream().delete_stream(cfg.stream)
    child = next(r.run_id for r in runs if r.name == "child")
    await projector.wait_for(await store.last_seq(), timeout=20)
    cur = projector.cursor()
    rows = cur.execute("SELECT run_id, name, user_id, status, parent, ended_at IS NOT NULL, "
                       "error->>'code' FROM workflows ORDER BY started_at, run_id").fetchall()
    assert sorted(rows) == sorted([
        (parent, "parent", "u1", "completed", None, True, None),
        (child, "child", "u1", "completed", parent, True, None),
        (broken, "broken", "u2", "failed", None, True, "step_failed"),
        (waits, "waits", None, "canceled", None, True, None)])
    steps = cur.execute("SELECT run_id, step, name, kind, attempt, status, "
                        "ended_at IS NOT NULL, error->>'code' FROM workflow_steps "
                        "ORDER BY run_id, step").fetchall()
    assert sorted(steps) == sorted([
        (parent, 1, "child", "workflow", 1, "completed", True, None),
        (parent, 2, "go", "event", 1, "completed", True, None),
        (child, 1, "flaky", "function", 2, "completed", True, None),
        (broken, 1, "boom", "function", 1, "failed", True, "ValueError"),
        (waits, 1, "never", "event", 1, "waiting", False, None)])
    before = {t: cur.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES}
    cur.close()

    rebuilt = Projector(ProjectorConfig(db_path=tmp_path / "rebuilt.duckdb",
                                        stream=store.stream, views=list(VIEWS)),
                        nc, nats_server.endpoint)
    try:
        await run_until_caught_up(rebuilt)
        c2 = rebuilt.cursor()
        after = {t: c2.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES}
        c2.close()
    finally:
        with suppress(Exception):
            await rebuilt.close()
    assert after == before
    assert json.dumps(before, default=str)  # rows are plain values
