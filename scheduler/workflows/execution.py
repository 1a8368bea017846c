"""One execution of a run's handler by its owner: replay, appends, waits, suspension.

The handler runs from the top on every execution; steps already in the journal return
their recorded results (replay), the rest run live. Each step outcome is appended with
the run's expected version *before* the step call returns, so before the next step can
start.

Guarantees
- Fencing: an append that meets another writer's worker event (conflict) or a duplicate
  of an append this execution did not send raises :class:`OwnershipLost`: the run has
  another owner, this execution stops and leaves the run's message alone.
- External events (sent events, cancel, child outcomes) met on a conflict are folded in
  and the append is retried; waiters they satisfy wake; a cancel fails every waiter and
  the next step call with :class:`RunCanceled`.
- Suspension: when every live step call waits on a timer or an event, ``run_suspended``
  (with the earliest due time) is appended, re-checked after any fold-in, and the
  execution ends with :class:`Suspended`; nothing waits in memory past that.

Failure modes: :class:`Unavailable` from the store after 3 tries propagates (the worker
leaves the message: redelivery after ``ack_wait``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from events.catalogue import Event
from events.envelope import utcnow
from events.errors import ConcurrencyError, Unavailable
from events.store import EventStore
from events.workflow_events import EXTERNAL_TYPES, ErrorInfo, run_aggregate
from scheduler.workflows.errors import OwnershipLost, RunAborted, RunCanceled
from scheduler.workflows.journal import Journal
from scheduler.workflows.queue import WorkflowConfig

PersistHook = Callable[[str, str], None]
"""Called with ("before" | "after", command id) around every append (fault injection)."""
SETTLE_YIELDS = 5


@dataclass(frozen=True)
class Suspended:
    wake_at: datetime | None


@dataclass
class _Waiter:
    step_no: int
    future: asyncio.Future[None]
    due: datetime | None
    event_name: str | None
    timer: asyncio.TimerHandle | None = None


class Execution:
    """State shared by the step calls of one execution (see :mod:`step`)."""

    def __init__(self, store: EventStore, journal: Journal, config: WorkflowConfig,
                 hook: PersistHook | None = None) -> None:
        self.store = store
        self.journal = journal
        self.config = config
        self.agg = run_aggregate(journal.run_id)
        self.hook = hook
        self.next_no = 1
        self.active = 0
        self.claimed: set[int] = set()
        self.marks: list[tuple[Event, str]] = []
        self.closed = False
        self._lock = asyncio.Lock()
        self._waiters: dict[int, _Waiter] = {}
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.handler_task: asyncio.Task[Any] | None = None

    @property
    def run_id(self) -> str:
        return self.journal.run_id

    @property
    def generation(self) -> int:
        return self.journal.generation

    # ------------------------------------------------------------ numbering
    def number(self) -> int:
        """The next step number (call order in the handler); counts the call active."""
        no = self.next_no
        if no > self.config.max_steps:
            raise RunAborted(ErrorInfo(code="journal_too_large", message=(
                f"step {no} is past the journal limit of {self.config.max_steps} steps")))
        self.next_no += 1
        self.active += 1
        return no

    def enter(self) -> None:
        task = asyncio.current_task()
        if task is not None and task is not self.handler_task:
            self._tasks.add(task)
        if self.closed:
            raise OwnershipLost()

    def leave(self) -> None:
        self.active -= 1
        self._changed.set()

    def check_cancel(self) -> None:
        if self.journal.cancel_requested is not None:
            raise RunCanceled()

    # ------------------------------------------------------------ appends
    async def append(self, event: Event, key: str,
                     recheck: Callable[[], bool] | None = None) -> bool:
        """Append ``event`` (command id ``key``) at the run's version; False only when
        ``recheck`` fails after folding in external events."""
        async with self._lock:
            while self.marks:
                mark, mkey = self.marks.pop(0)
                await self._append_one(mark, mkey, None)
            return await self._append_one(event, key, recheck)

    async def open_step(self, event: Event, key: str) -> None:
        """Append an event that opens (an attempt of) a step, unless a cancel arrived:
        then :class:`RunCanceled` (the run stops at this step boundary)."""
        if not await self.append(event, key, recheck=self._not_canceled):
            raise RunCanceled()

    def _not_canceled(self) -> bool:
        return self.journal.cancel_requested is None

    async def _append_one(self, event: Event, key: str,
                          recheck: Callable[[], bool] | None) -> bool:
        tries = 0
        while True:
            if self.hook:
                self.hook("before", key)
            try:
                res = await self.store.append(self.agg, [event], self.journal.version,
                                              command_id=key)
            except ConcurrencyError:
                await self._integrate()
                if recheck is not None and not recheck():
                    return False
                continue
            except Unavailable:
                tries += 1
                if tries >= 3:
                    raise
                continue
            if res.duplicate and tries == 0:
                raise OwnershipLost()
            self.journal.apply(res.last_seq, event, utcnow())
            if self.hook:
                self.hook("after", key)
            return True

    async def _integrate(self) -> None:
        for rec in await self.store.read(self.agg, after_seq=self.journal.version):
            if rec.type not in EXTERNAL_TYPES:
                raise OwnershipLost()
            self.journal.apply(rec.seq, rec.event, rec.envelope.occurred_at)
        self._wake_waiters()

    # ------------------------------------------------------------ waiting
    def next_event(self, name: str) -> int | None:
        """The first received event named ``name`` not yet consumed nor claimed."""
        used = self.journal.consumed() | self.claimed
        for seq, ev in self.journal.received:
            if ev.event_name == name and seq not in used:
                return seq
        return None

    async def wait(self, step_no: int, due: datetime | None,
                   event_name: str | None = None) -> None:
        """Block this step call until ``due``, a matching event, or a child outcome."""
        loop = asyncio.get_running_loop()
        w = _Waiter(step_no, loop.create_future(), due, event_name)
        if due is not None:
            delay = max(0.0, (due - utcnow()).total_seconds())
            w.timer = loop.call_later(delay, _resolve, w.future)
        self._waiters[step_no] = w
        self._changed.set()
        try:
            await w.future
        finally:
            self._waiters.pop(step_no, None)
            if w.timer is not None:
                w.timer.cancel()

    def _wake_waiters(self) -> None:
        canceled = self.journal.cancel_requested is not None
        assigned: set[int] = set()
        for no in sorted(self._waiters):
            w = self._waiters[no]
            if w.future.done():
                continue
            if canceled:
                w.future.set_exception(RunCanceled())
            elif w.event_name is not None:
                used = self.journal.consumed() | self.claimed | assigned
                seq = next((s for s, e in self.journal.received
                            if e.event_name == w.event_name and s not in used), None)
                if seq is not None:
                    assigned.add(seq)
                    w.future.set_result(None)
            else:
                rec = self.journal.steps.get(w.step_no)
                if rec is not None and rec.done:
                    w.future.set_result(None)

    def quiescent(self) -> bool:
        """Every live step call waits (and at least one does)."""
        pending = [w for w in self._waiters.values() if not w.future.done()]
        return bool(pending) and self.active == len(pending) and not self.marks

    def earliest_due(self) -> datetime | None:
        dues = [w.due for w in self._waiters.values() if w.due is not None]
        return min(dues) if dues else None

    async def settle(self) -> bool:
        """Let freshly created step calls register, then re-check :meth:`quiescent`."""
        for _ in range(SETTLE_YIELDS):
            await asyncio.sleep(0)
        return self.quiescent()

    async def changed(self) -> None:
        await self._changed.wait()
        self._changed.clear()

    async def stop_branches(self) -> None:
        """Stop every step call still running (a finished or suspended execution)."""
        self.closed = True
        tasks = [t for t in self._tasks if not t.done()]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
