"""A run's journal: its events folded into step records, and the determinism check.

Pure (no I/O): :meth:`Journal.apply` takes events in log order. A restart
(``workflow_restarted``) drops the steps from ``from_step`` on and the outcome; events of
an older generation arriving later (a late child outcome) are ignored.

Guarantees: :func:`check_step` raises :class:`RunAborted` (code ``nondeterministic``)
naming the step when the handler asks for step ``n`` with another name, kind or argument
hash than the journal recorded at ``n``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from events.catalogue import Event
from events.envelope import RecordedEvent
from events.workflow_events import (
    EXTERNAL_TYPES,
    CancelRequested,
    ChildCompleted,
    CompletionHandled,
    ErrorInfo,
    EventAwaited,
    EventReceived,
    PatchMarked,
    RunSuspended,
    SleepScheduled,
    StepCompleted,
    StepFailed,
    StepScheduled,
    StepStarted,
    WorkflowCanceled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowRestarted,
    WorkflowStarted,
)
from scheduler.workflows.errors import RunAborted


def args_hash(args: Any) -> str:
    """A short stable hash of a step's arguments (canonical JSON)."""
    raw = json.dumps(args, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass
class StepRecord:
    step_no: int
    name: str
    kind: str
    args_hash: str
    status: str = "scheduled"
    """scheduled, running, retrying, sleeping, waiting, completed, failed."""
    started: int = 0
    """``step_started`` events: attempts begun, crashed ones included."""
    failures: int = 0
    result: Any = None
    error: ErrorInfo | None = None
    not_before: datetime | None = None
    event_name: str | None = None
    event_seq: int | None = None
    child_run_id: str | None = None
    first_at: datetime | None = None
    last_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status in ("completed", "failed")


@dataclass
class Journal:
    run_id: str
    started: WorkflowStarted | None = None
    first_seq: int = 0
    version: int = 0
    generation: int = 0
    steps: dict[int, StepRecord] = field(default_factory=dict)
    received: list[tuple[int, EventReceived]] = field(default_factory=list)
    cancel_requested: str | None = None
    outcome: str | None = None
    """completed, failed or canceled (of the current generation)."""
    result: Any = None
    error: ErrorInfo | None = None
    completion_handled: bool = False
    suspended_seq: int | None = None
    """Sequence of the ``run_suspended`` that is the run's last worker event, if any."""
    wake_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def of(cls, run_id: str, records: list[RecordedEvent]) -> Journal:
        j = cls(run_id)
        for r in records:
            j.apply(r.seq, r.event, r.envelope.occurred_at)
        return j

    def consumed(self) -> set[int]:
        return {s.event_seq for s in self.steps.values() if s.event_seq is not None}

    def apply(self, seq: int, ev: Event, at: datetime) -> None:
        self.version = max(self.version, seq)
        self.updated_at = at
        if getattr(ev, "generation", self.generation) < self.generation:
            return
        if ev.type not in EXTERNAL_TYPES:
            self.suspended_seq = None
        if isinstance(ev, WorkflowStarted):
            self.started, self.first_seq = ev, seq
        elif isinstance(ev, StepStarted | StepScheduled | SleepScheduled | EventAwaited
                        | PatchMarked):
            self._open(ev, at)
        elif isinstance(ev, StepCompleted | StepFailed):
            self._close(ev, at)
        elif isinstance(ev, ChildCompleted):
            rec = self.steps.get(ev.step_no)
            if rec is not None and not rec.done:
                rec.status = "completed" if ev.status == "completed" else "failed"
                rec.result, rec.last_at = ev.result, at
                rec.error = ev.error or (None if ev.status == "completed" else ErrorInfo(
                    code="child_canceled", message=f"child run {ev.child_run_id} canceled"))
        elif isinstance(ev, EventReceived):
            self.received.append((seq, ev))
        elif isinstance(ev, CancelRequested):
            self.cancel_requested = ev.reason
        elif isinstance(ev, RunSuspended):
            self.suspended_seq, self.wake_at = seq, ev.wake_at
        elif isinstance(ev, WorkflowCompleted):
            self.outcome, self.result = "completed", ev.result
        elif isinstance(ev, WorkflowFailed):
            self.outcome, self.error = "failed", ev.error
        elif isinstance(ev, WorkflowCanceled):
            self.outcome = "canceled"
        elif isinstance(ev, CompletionHandled):
            self.completion_handled = True
        elif isinstance(ev, WorkflowRestarted):
            self.generation = ev.generation
            self.steps = {n: s for n, s in self.steps.items() if n < ev.from_step}
            self.outcome, self.result, self.error = None, None, None
            self.completion_handled, self.cancel_requested = False, None

    def _open(self, ev: StepStarted | StepScheduled | SleepScheduled | EventAwaited
              | PatchMarked, at: datetime) -> None:
        rec = self.steps.get(ev.step_no)
        if rec is None:
            rec = self.steps[ev.step_no] = StepRecord(ev.step_no, ev.name, ev.kind,
                                                      ev.args_hash, first_at=at)
        rec.last_at = at
        if isinstance(ev, StepStarted):
            rec.started += 1
            rec.status, rec.not_before = "running", None
            rec.child_run_id = ev.child_run_id or rec.child_run_id
        elif isinstance(ev, StepScheduled):
            rec.status, rec.not_before = "scheduled", ev.run_at
        elif isinstance(ev, SleepScheduled):
            rec.status, rec.not_before = "sleeping", ev.wake_at
        elif isinstance(ev, EventAwaited):
            rec.status, rec.not_before, rec.event_name = "waiting", ev.timeout_at, ev.event_name
        else:
            rec.status = "completed"

    def _close(self, ev: StepCompleted | StepFailed, at: datetime) -> None:
        rec = self.steps.get(ev.step_no)
        if rec is None:
            return
        rec.last_at = at
        if isinstance(ev, StepCompleted):
            rec.status, rec.result, rec.event_seq = "completed", ev.result, ev.event_seq
        else:
            rec.failures += 1
            rec.error = ev.error
            rec.status = "retrying" if ev.will_retry else "failed"
            rec.not_before = ev.retry_at if ev.will_retry else None


def check_step(journal: Journal, step_no: int, name: str, kind: str, ahash: str
               ) -> StepRecord | None:
    """The journal's record of step ``step_no`` if it matches the call, None if the
    journal has no such step; raises :class:`RunAborted` (``nondeterministic``)."""
    rec = journal.steps.get(step_no)
    if rec is None:
        return None
    if (rec.name, rec.kind, rec.args_hash) != (name, kind, ahash):
        what = ("name" if rec.name != name else "kind" if rec.kind != kind else "arguments")
        raise RunAborted(ErrorInfo(code="nondeterministic", message=(
            f"step {step_no} is {kind} {name!r} (args {ahash}) but the journal recorded "
            f"{rec.kind} {rec.name!r} (args {rec.args_hash}) there: the {what} changed; "
            f"guard the change with a new workflow version or step.patched()")))
    return rec
