"""Status, runs and steps answered from the log (no projection needed).

Each answer folds the run's own events (``events.workflow.<run_id>.>``) read from the
stream leader, so it reflects every append acknowledged before the call. ``list_runs``
walks the ``workflow_started`` events of the stream (O(runs)); the ``workflows`` view
will answer it cheaper once projected.

Failure modes: an unknown run raises :class:`NotFound`; :class:`Unavailable` when the
server does not answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from events.envelope import STREAM_PREFIX
from events.errors import NotFound
from events.store import EventStore
from events.workflow_events import WORKFLOW_AGGREGATE, ErrorInfo, run_aggregate
from scheduler.workflows.journal import Journal


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    name: str
    version: int
    state: str
    """running, suspended, completed, failed or canceled."""
    result: Any
    error: ErrorInfo | None
    steps: int
    generation: int
    completion_handled: bool
    wake_at: datetime | None
    updated_at: datetime | None
    version_seq: int
    user_id: str | None = None
    """Who started the run (``workflow_started.user_id``)."""
    parent_run_id: str | None = None


@dataclass(frozen=True)
class StepInfo:
    step_no: int
    name: str
    kind: str
    status: str
    attempts: int
    result: Any
    error: ErrorInfo | None
    started_at: datetime | None
    updated_at: datetime | None


async def load_journal(store: EventStore, run_id: str, first_seq: int = 0) -> Journal:
    """The run's journal; ``first_seq`` (its first event's sequence, if known) skips a
    scan. An empty journal (no ``workflow_started``) is returned as is."""
    records = await store.read(run_aggregate(run_id), after_seq=max(0, first_seq - 1))
    return Journal.of(run_id, records)


def status_of(j: Journal) -> RunStatus:
    if j.started is None:
        raise NotFound(f"no workflow run {j.run_id!r}", details={"run_id": j.run_id})
    state = j.outcome or ("suspended" if j.suspended_seq is not None else "running")
    return RunStatus(run_id=j.run_id, name=j.started.name, version=j.started.version,
                     state=state, result=j.result, error=j.error, steps=len(j.steps),
                     generation=j.generation, completion_handled=j.completion_handled,
                     wake_at=j.wake_at if state == "suspended" else None,
                     updated_at=j.updated_at, version_seq=j.version,
                     user_id=j.started.user_id, parent_run_id=j.started.parent_run_id)


async def status(store: EventStore, run_id: str) -> RunStatus:
    return status_of(await load_journal(store, run_id))


async def list_steps(store: EventStore, run_id: str) -> list[StepInfo]:
    j = await load_journal(store, run_id)
    status_of(j)  # NotFound for an unknown run
    return [StepInfo(step_no=s.step_no, name=s.name, kind=s.kind, status=s.status,
                     attempts=s.started, result=s.result, error=s.error,
                     started_at=s.first_at, updated_at=s.last_at)
            for s in sorted(j.steps.values(), key=lambda s: s.step_no)]


async def list_runs(store: EventStore, *, name: str | None = None, limit: int = 100,
                    user_id: str | None = None) -> list[RunStatus]:
    """The most recent ``limit`` runs (of ``name``, of ``user_id``, if given), newest
    first."""
    subject = f"{STREAM_PREFIX}.{WORKFLOW_AGGREGATE}.*.workflow_started"
    found: list[tuple[str, int]] = []
    async for seq, _subj, data in store.replay_raw(subject=subject):
        env = json.loads(data)
        data = env.get("data", {})
        if (name is None or data.get("name") == name) and (
                user_id is None or data.get("user_id") == user_id):
            found.append((str(env["aggregate_id"]), seq))
    out = []
    for run_id, seq in reversed(found[-limit:]):
        out.append(status_of(await load_journal(store, run_id, seq)))
    return out
