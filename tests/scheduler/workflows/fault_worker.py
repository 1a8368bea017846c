"""A workflow worker process for fault injection: ``python -m
tests.scheduler.workflows.fault_worker`` with the settings in ``FI_*`` environment
variables. It registers the 4-step workflow ``FI_NAME`` and SIGKILLs itself at persist
point ``FI_KILL_AT`` (0-based count of "before"/"after" hooks around its appends) or in
the middle of step ``FI_KILL_MID`` (after the step's side effect, before its record).

Side effects are lines appended to files in ``FI_DIR``: ``<run>.step<n>`` per execution
of step n, ``<run>.complete`` per execution of ``on_complete``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

from events import EventStore, EventStreamSpec
from events.connection import NatsEndpoint
from scheduler.workflows import (
    IdempotencyKey,
    RunOutcome,
    Step,
    WorkflowConfig,
    Workflows,
    WorkflowWorker,
)

STEPS = 4


def die(reason: str) -> None:
    marker = os.environ.get("FI_DIR")
    if marker:
        Path(marker, f"killed-{os.environ.get('FI_NAME')}").write_text(
            f"{time.time()} {reason}")
    os.kill(os.getpid(), signal.SIGKILL)


def register(workflows: Workflows, name: str, out: Path, kill_mid: int = 0) -> None:
    def effect(n: int, key: IdempotencyKey) -> int:
        with open(out / f"{key.run_id}.step{n}", "a") as f:
            f.write(f"{key}\n")
        if n == kill_mid:
            die(f"mid step {n}")
        return n

    @workflows.define(name)
    async def four_steps(step: Step, args: Any) -> int:
        total = 0
        for n in range(1, STEPS + 1):
            total += int(await step.run(effect, n, name=f"s{n}"))
        return total

    if "fi_complete" not in workflows._completions:
        @workflows.on_complete("fi_complete")
        async def complete(outcome: RunOutcome) -> None:
            with open(out / f"{outcome.run_id}.complete", "a") as f:
                f.write(f"{outcome.key}\n")


async def main() -> None:
    env = os.environ
    endpoint = NatsEndpoint.of(env["FI_URL"], env.get("FI_CREDS") or None)
    nc = await endpoint.connect()
    store = EventStore(nc, EventStreamSpec(name=env["FI_EVENTS"]))
    config = WorkflowConfig(stream=env["FI_STREAM"], prefix=env["FI_PREFIX"], ack_wait=1.0)
    workflows = Workflows()
    register(workflows, env["FI_NAME"], Path(env["FI_DIR"]), int(env.get("FI_KILL_MID", "0")))
    kill_at = int(env.get("FI_KILL_AT", "-1"))
    points = 0

    def hook(when: str, key: str) -> None:
        nonlocal points
        if points == kill_at:
            die(f"{when} {key}")
        points += 1

    async with WorkflowWorker(store, workflows, config, hook=hook):
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main())
