"""A workflow worker for ``threadlog demo``, run as its own process so the demo can
SIGKILL it mid-run and show another worker take the run over.

``python -m threadlog.demo_worker URL CREDS STREAM RUNS_FILE`` connects with the given
(service) credentials and works the ``demo_report`` workflow until killed. Each step
function appends one line to ``RUNS_FILE`` when it starts, so the demo can count how
often each step ran across the crash: a completed step never runs again, the step in
flight at the kill runs again (at least once).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from events import EventStore, EventStreamSpec
from events.connection import NatsEndpoint
from scheduler.workflows import IdempotencyKey, Step, WorkflowConfig, Workflows, WorkflowWorker

WORKFLOW = "demo_report"
ACK_WAIT_S = 1.5
"""The takeover bound: a dead worker's run is redelivered this long after its last
heartbeat (production default: 10 s)."""

workflows = Workflows()
_runs_file: Path | None = None


def _ran(step: str) -> None:
    """Count a run of ``step`` (a step function gets an idempotency key, (run, step), for
    effects that must not happen twice; this counter deliberately ignores it)."""
    if _runs_file is not None:
        with _runs_file.open("a") as f:
            f.write(f"{step}\n")
    print(f"ran {step}", flush=True)


async def gather_figures(args: Any, key: IdempotencyKey) -> dict[str, Any]:
    _ran("gather_figures")
    return {"threads": 3, "messages": 12}


async def write_report(figures: Any, key: IdempotencyKey) -> str:
    _ran("write_report")
    await asyncio.sleep(1.0)  # long enough for the demo to kill this worker mid-step
    return f"{figures['threads']} threads, {figures['messages']} messages"


async def publish(report: Any, key: IdempotencyKey) -> str:
    _ran("publish")
    return f"published: {report}"


@workflows.define(WORKFLOW)
async def demo_report(step: Step, args: Any) -> dict[str, Any]:
    figures = await step.run(gather_figures, args, name="gather_figures")
    report = await step.run(write_report, figures, name="write_report")
    done = await step.run(publish, report, name="publish")
    return {"report": report, "status": done}


def config(stream: str) -> WorkflowConfig:
    """The demo's run queue: the deployment's (``threadlog.parts.workflow_config``) with
    a short ack wait so the takeover shows within the demo."""
    return WorkflowConfig(stream=f"{stream}_WF", prefix=f"wf.{stream}.run",
                          ack_wait=ACK_WAIT_S)


async def work(url: str, creds: str, stream: str) -> None:
    nc = await NatsEndpoint.of([url], creds).connect(name="threadlog-demo-worker")
    store = EventStore(nc, EventStreamSpec(name=stream))
    worker = WorkflowWorker(store, workflows, config(stream))
    await worker.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str]) -> None:
    global _runs_file
    url, creds, stream, runs = argv
    _runs_file = Path(runs)
    asyncio.run(work(url, creds, stream))


if __name__ == "__main__":
    main(sys.argv[1:])
