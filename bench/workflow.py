"""``threadlog bench workflow``: per-step overhead of durable workflows, and workflows/s.

A workflow of 10 no-op steps run one after another; N such workflows started one after
another (each waits for the previous one's ``on_complete``). Per step, two appends are
awaited: ``step_started`` before the step runs and ``step_completed`` after it (a step's
outcome is stored before the next step starts: no pipelining). The step overhead is the
time between two consecutive step returns inside the handler. Workflows/s counts start
(``workflow_started`` + the run message), delivery to the worker, journal read, the ten
steps, ``workflow_completed``, ``on_complete`` (not ``completion_handled``, which follows).
Also measured: the same with 50 workflows in flight at once.

Each figure is given twice: with JetStream's default ``sync_interval`` (2 min: an
acknowledged append is in the OS page cache, not yet fsynced; an OS crash can lose it)
and with ``sync_interval: always`` (fsync before every acknowledgement).
Targets: step p50 <= 0.5 ms, p99 <= 3 ms (DBOS 3.4 + SQLite: 1.88 / 2.87 ms, 51 wf/s).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from typing import Any

from bench._report import now, rate, report
from events import EventStore, EventStreamSpec
from scheduler.workflows import (
    IdempotencyKey,
    RunOutcome,
    Step,
    WorkflowClient,
    WorkflowConfig,
    Workflows,
    WorkflowWorker,
)
from threadlog.embedded_nats import EmbeddedNats
from threadlog.gc_tuning import frozen_startup

STEPS = 10


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def noop(args: Any, key: IdempotencyKey) -> None:
    return None


async def measure(workflows_n: int, sync: str | None) -> dict[str, float]:
    gaps: list[float] = []
    done: dict[str, asyncio.Event] = {}
    workflows = Workflows()

    @workflows.define("bench10")
    async def bench10(step: Step, args: Any) -> None:
        last = now()
        for i in range(STEPS):
            await step.run(noop, i, name="noop")
            t = now()
            if i > 0:
                gaps.append((t - last) * 1000)
            last = t

    @workflows.on_complete("bench_done")
    async def finished(outcome: RunOutcome) -> None:
        done.setdefault(outcome.run_id, asyncio.Event()).set()

    with tempfile.TemporaryDirectory() as d, EmbeddedNats(d, sync_interval=sync) as srv:
        nc = await srv.endpoint.connect()
        store = EventStore(nc, EventStreamSpec(name="BENCHWF"))
        await store.setup()
        config = WorkflowConfig(stream="BENCHWF_RUNS", prefix="bwf.run")
        client = WorkflowClient(store, config, workflows)
        await client.setup()

        async def one(i: int) -> None:
            run_id = f"r{i}"
            ev = done.setdefault(run_id, asyncio.Event())
            await client.start("bench10", run_id=run_id, on_complete="bench_done")
            await ev.wait()

        async with WorkflowWorker(store, workflows, config):
            for i in range(20):  # warm up
                await one(-i - 1)
            gaps.clear()
            t0 = now()
            for i in range(workflows_n):
                await one(i)
            seq_wps = rate(workflows_n, now() - t0)
            step_gaps = list(gaps)
            t0 = now()
            base = workflows_n
            for k in range(0, workflows_n, 50):
                await asyncio.gather(*(one(base + k + j) for j in range(50)))
            par_wps = rate(workflows_n - workflows_n % 50 or workflows_n, now() - t0)
        await store.close()
        await nc.close()
    return {"p50": pct(step_gaps, 50), "p99": pct(step_gaps, 99), "wps": seq_wps,
            "wps50": par_wps}


async def amain(n: int) -> None:
    with frozen_startup():  # as a serving process (running()) does: threadlog.gc_tuning
        fast = await measure(n, None)
        synced = await measure(n, "always")
    rows: list[tuple[Any, ...]] = [
        ("step overhead p50 (ms), sync_interval 2 min", round(fast["p50"], 3), "<= 0.5"),
        ("step overhead p99 (ms), sync_interval 2 min", round(fast["p99"], 3), "<= 3"),
        ("10-step workflows/s, one at a time", round(fast["wps"], 1), "DBOS 51"),
        ("10-step workflows/s, 50 in flight", round(fast["wps50"], 1)),
        ("step overhead p50 (ms), sync_interval always", round(synced["p50"], 3)),
        ("step overhead p99 (ms), sync_interval always", round(synced["p99"], 3)),
        ("10-step workflows/s, one at a time, always", round(synced["wps"], 1)),
        ("10-step workflows/s, 50 in flight, always", round(synced["wps50"], 1)),
    ]
    report("workflow", rows, {
        "step_p50_ms": round(fast["p50"], 3), "step_p99_ms": round(fast["p99"], 3),
        "workflows_per_s": round(fast["wps"], 1),
        "workflows_per_s_50_in_flight": round(fast["wps50"], 1),
        "step_p50_ms_sync_always": round(synced["p50"], 3),
        "step_p99_ms_sync_always": round(synced["p99"], 3),
        "workflows_per_s_sync_always": round(synced["wps"], 1),
        "workflows": n, "steps": STEPS, "target_p50_ms": 0.5, "target_p99_ms": 3.0,
        "meets_target": fast["p50"] <= 0.5 and fast["p99"] <= 3.0})


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="threadlog bench workflow")
    p.add_argument("--workflows", type=int, default=500)
    args = p.parse_args(argv)
    asyncio.run(amain(args.workflows))
