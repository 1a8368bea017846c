"""A work item's state, folded from its events, and its public status.

:class:`WorkState` is a pure fold of the ``events.work.<id>.*`` log (no I/O): the
worker decides every delivery from it, :meth:`Workpool.status` reports it.

Guarantees: the fold is total over valid logs and deterministic; ``version`` is the
stream sequence of the last event folded (the expected version of the next append).
Failure modes: events out of the item's life order (e.g. ``work_started`` after
``work_completed``) are folded as they come; the worker never appends such a log since
every append checks the expected version.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from events.catalogue import Event
from events.work_events import (
    RetrySpec,
    WorkCanceled,
    WorkCompleted,
    WorkCompletionClaimed,
    WorkCompletionHandled,
    WorkEnqueued,
    WorkFailed,
    WorkResultKind,
    WorkStarted,
)

Phase = Literal["pending", "running", "finished"]


@dataclass(frozen=True)
class WorkResult:
    """How an item ended: ``success`` with ``return_value``, ``failed`` with ``error``,
    or ``canceled``."""

    kind: WorkResultKind
    return_value: Any = None
    error: str | None = None


@dataclass(frozen=True)
class WorkStatus:
    """What :meth:`Workpool.status` returns. ``previous_attempts`` counts attempts that
    ended (failed) before the current one (Convex's ``previousAttempts``); ``attempts``
    counts every start."""

    state: Phase
    previous_attempts: int
    attempts: int
    result: WorkResult | None = None
    completion_handled: bool = False


@dataclass(frozen=True)
class WorkState:
    """Everything the worker needs to decide what a delivery of the item does."""

    work_id: str
    pool: str
    fn: str
    args: Any
    on_complete: str | None
    context: Any
    retry: RetrySpec
    run_at: datetime | None
    version: int
    attempts: int = 0
    failures: int = 0
    phase: Phase = "pending"
    owner_seq: int | None = None
    """WORK message owning the running attempt (or, once finished, its completion)."""
    owner_delivery: int = 0
    """Which delivery of ``owner_seq`` owns it."""
    retry_at: datetime | None = None
    result: WorkResult | None = None
    completion_handled: bool = False
    history: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def start(cls, ev: WorkEnqueued, seq: int) -> WorkState:
        return cls(work_id=ev.work_id, pool=ev.pool, fn=ev.fn, args=ev.args,
                   on_complete=ev.on_complete, context=ev.context, retry=ev.retry,
                   run_at=ev.run_at, version=seq, history=(ev.type,))

    @property
    def due_at(self) -> datetime | None:
        """When the next attempt may start (pending items only)."""
        return self.retry_at if self.attempts else self.run_at

    @property
    def needs_completion(self) -> bool:
        return (self.phase == "finished" and self.on_complete is not None
                and not self.completion_handled)

    def apply(self, ev: Event, seq: int) -> WorkState:
        """The state after ``ev`` (stored at ``seq``)."""
        s = replace(self, version=seq, history=(*self.history, ev.type))
        if isinstance(ev, WorkStarted):
            return replace(s, attempts=max(s.attempts, ev.attempt), phase="running",
                           owner_seq=ev.msg_seq, owner_delivery=ev.delivery, retry_at=None)
        if isinstance(ev, WorkCompleted):
            if s.phase == "finished":
                return s
            return replace(s, phase="finished",
                           result=WorkResult("success", return_value=ev.result))
        if isinstance(ev, WorkFailed):
            if s.phase == "finished":
                return s
            s = replace(s, failures=s.failures + 1)
            if ev.will_retry:
                return replace(s, phase="pending", owner_seq=None, retry_at=ev.retry_at)
            return replace(s, phase="finished", result=WorkResult("failed", error=ev.error))
        if isinstance(ev, WorkCanceled):
            if s.phase == "finished":
                return s
            # A canceled item's completion is unowned until a message claims it.
            return replace(s, phase="finished", owner_seq=None,
                           result=WorkResult("canceled", error=ev.reason or None))
        if isinstance(ev, WorkCompletionClaimed):
            return replace(s, owner_seq=ev.msg_seq, owner_delivery=ev.delivery)
        if isinstance(ev, WorkCompletionHandled):
            return replace(s, completion_handled=True)
        return s

    def status(self) -> WorkStatus:
        return WorkStatus(state=self.phase, previous_attempts=self.failures,
                          attempts=self.attempts, result=self.result,
                          completion_handled=self.completion_handled)


def fold(events: list[tuple[int, Event]]) -> WorkState | None:
    """The state of an item from its ``(seq, event)`` log; None when it was never
    enqueued (or its ``work_enqueued`` is gone)."""
    state: WorkState | None = None
    for seq, ev in events:
        if state is None:
            if isinstance(ev, WorkEnqueued):
                state = WorkState.start(ev, seq)
            continue
        state = state.apply(ev, seq)
    return state
