"""The client API: start, status, wait, cancel, restart, list, list_steps, cleanup and
send_event (Convex Workflow's surface, in Python).

Guarantees
- ``start`` returns once ``workflow_started`` is stored and the run is queued; passing
  the same ``run_id`` again starts nothing new.
- ``cancel`` and ``send_event`` are events on the run (see ``launcher``): a canceled run
  stops at its next step boundary; an event is delivered to the run's first
  ``await_event`` of that name that has not consumed one.
- ``restart`` re-runs a finished run from ``from_step`` (earlier steps keep their
  results; ``on_complete`` runs again for the new generation).
- ``cleanup`` erases a finished run's events (bytes overwritten, see
  ``EventStore.erase``).

Failure modes: :class:`NotFound` for an unknown run; :class:`InvalidTransition` for a
cancel of a finished run, a restart of an unfinished one or a cleanup before the
completion is recorded; :class:`Timeout` from ``wait``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from events.errors import ConcurrencyError, InvalidTransition, Timeout
from events.ids import check_token, new_id
from events.store import EventStore
from events.workflow_events import (
    CancelRequested,
    EventReceived,
    WorkflowRestarted,
    run_aggregate,
    run_key,
)
from scheduler.workflows import read
from scheduler.workflows.definition import Workflows
from scheduler.workflows.launcher import Launcher
from scheduler.workflows.queue import RunQueue, WorkflowConfig
from scheduler.workflows.read import RunStatus, StepInfo, load_journal, status_of


class WorkflowClient:
    def __init__(self, store: EventStore, config: WorkflowConfig | None = None,
                 workflows: Workflows | None = None) -> None:
        self.store = store
        self.config = config or WorkflowConfig()
        self.queue = RunQueue(store.nc.jetstream(), self.config)
        self.launcher = Launcher(store, self.queue)
        self.workflows = workflows

    async def setup(self) -> None:
        await self.queue.ensure()

    async def start(self, name: str, args: Any = None, *, version: int | None = None,
                    on_complete: str | None = None, context: Any = None,
                    run_id: str | None = None, user_id: str | None = None) -> str:
        run_id = check_token(run_id or new_id(), what="run_id")
        v = version or (self.workflows.latest(name) if self.workflows else None) or 1
        await self.launcher.start(run_id, check_token(name, what="workflow name"), v, args,
                                  on_complete=on_complete, context=context,
                                  user_id=check_token(user_id, what="user_id")
                                  if user_id is not None else None)
        return run_id

    async def status(self, run_id: str) -> RunStatus:
        return await read.status(self.store, run_id)

    async def list_steps(self, run_id: str) -> list[StepInfo]:
        return await read.list_steps(self.store, run_id)

    async def list(self, *, name: str | None = None, limit: int = 100,
                   user_id: str | None = None) -> list[RunStatus]:
        return await read.list_runs(self.store, name=name, limit=limit, user_id=user_id)

    async def wait(self, run_id: str, timeout: float = 30.0, *,
                   completion: bool = True) -> RunStatus:
        """Wait (bounded) until the run finished (and, with ``completion``, its
        completion is recorded): follows the run's events, no polling."""
        j = await load_journal(self.store, run_id)
        try:
            async with asyncio.timeout(timeout):
                if not _done(j, completion):
                    async for rec in self.store.watch(run_aggregate(run_id), j.version + 1):
                        j.apply(rec.seq, rec.event, rec.envelope.occurred_at)
                        if _done(j, completion):
                            break
        except TimeoutError:
            if not _done(j, completion):
                raise Timeout(f"run {run_id} did not finish in {timeout}s",
                              details={"run_id": run_id}) from None
        return status_of(j)

    async def send_event(self, run_id: str, name: str, value: Any = None, *,
                         event_id: str | None = None) -> None:
        eid = check_token(event_id or new_id(), what="event_id")
        await self.launcher.notify(run_id, EventReceived(event_name=name, value=value,
                                                         event_id=eid),
                                   f"wf:{run_id}:event:{eid}")

    async def cancel(self, run_id: str, reason: str = "") -> None:
        j = await load_journal(self.store, run_id)
        st = status_of(j)
        if st.state in ("completed", "failed", "canceled"):
            raise InvalidTransition(f"run {run_id} already {st.state}",
                                    details={"run_id": run_id, "state": st.state})
        await self.launcher.notify(run_id, CancelRequested(reason=reason),
                                   run_key(run_id, j.generation, "cancel"))

    async def restart(self, run_id: str, *, from_step: int = 1) -> None:
        j = await load_journal(self.store, run_id)
        st = status_of(j)
        if st.state not in ("completed", "failed", "canceled") or not j.completion_handled:
            raise InvalidTransition(f"run {run_id} is {st.state}: only a finished run "
                                    "restarts", details={"run_id": run_id})
        gen = j.generation + 1
        try:
            await self.store.append(run_aggregate(run_id),
                                    [WorkflowRestarted(generation=gen, from_step=from_step)],
                                    j.version, command_id=run_key(run_id, gen, "restart"))
        except ConcurrencyError:
            raise InvalidTransition(f"run {run_id} changed meanwhile",
                                    details={"run_id": run_id}) from None
        await self.queue.publish(st.name, st.version, run_id, f"start:{run_id}:g{gen}",
                                 j.first_seq)

    async def cleanup(self, run_id: str) -> int:
        """Erase a finished run's events; returns how many were erased."""
        j = await load_journal(self.store, run_id)
        if j.started is None:
            return 0
        if j.outcome is None or not j.completion_handled:
            raise InvalidTransition(f"run {run_id} is not finished",
                                    details={"run_id": run_id})
        return await self.store.erase(run_aggregate(run_id))


def _done(j: Any, completion: bool) -> bool:
    return bool(j.outcome is not None and (j.completion_handled or not completion))
