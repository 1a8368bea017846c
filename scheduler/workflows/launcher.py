"""Starting runs and appending the external events (sent events, cancels, child
outcomes) that wake a suspended run.

Guarantees
- ``start`` is idempotent per ``run_id``: ``workflow_started`` is appended with
  ``expected="no_stream"`` and a derived message id, and the run's message is published
  (again) while no worker has written to the run yet.
- ``notify`` appends first and then reads the log: a run whose last worker event is
  ``run_suspended`` is woken. An owner suspending concurrently either meets the new
  event as a conflict (and folds it in) or suspended first (and is woken): no lost wake.

Failure modes: :class:`Unavailable` from the store or the queue (call again: every
append here is idempotent by its command id).
"""

from __future__ import annotations

from typing import Any

from events.catalogue import Event
from events.errors import ConcurrencyError
from events.store import EventStore
from events.workflow_events import WorkflowStarted, run_aggregate
from scheduler.workflows.queue import RunQueue
from scheduler.workflows.read import load_journal


class Launcher:
    def __init__(self, store: EventStore, queue: RunQueue) -> None:
        self.store = store
        self.queue = queue

    async def start(self, run_id: str, name: str, version: int, args: Any, *,
                    on_complete: str | None = None, context: Any = None,
                    parent: tuple[str, int, int] | None = None,
                    user_id: str | None = None) -> None:
        """Record and deliver a run; ``parent`` is (run id, generation, step number);
        ``user_id`` the user it acts for (recorded, also in the envelope)."""
        ev = WorkflowStarted(run_id=run_id, name=name, version=version, args=args,
                             on_complete=on_complete, context=context, user_id=user_id,
                             parent_run_id=parent[0] if parent else None,
                             parent_generation=parent[1] if parent else None,
                             parent_step=parent[2] if parent else None)
        agg = run_aggregate(run_id)
        try:
            res = await self.store.append(agg, [ev], "no_stream", command_id=f"wf:{run_id}:start",
                                          user_id=user_id)
            first = res.first_seq
        except ConcurrencyError:
            j = await load_journal(self.store, run_id)
            if j.started is None or j.version != j.first_seq:
                return  # already taken by a worker (or not ours to deliver)
            first = j.first_seq
        await self.queue.publish(name, version, run_id, f"start:{run_id}", first)

    async def notify(self, run_id: str, event: Event, key: str) -> None:
        """Append an external ``event`` to the run and wake it if it is suspended."""
        await self.store.append(run_aggregate(run_id), [event], "any", command_id=key)
        await self.wake(run_id)

    async def wake(self, run_id: str) -> bool:
        j = await load_journal(self.store, run_id)
        if j.started is None or j.outcome is not None or j.suspended_seq is None:
            return False
        await self.queue.publish(j.started.name, j.started.version, run_id,
                                 f"wake:{run_id}:{j.suspended_seq}", j.first_seq)
        return True
