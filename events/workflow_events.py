"""Durable workflow runs: one aggregate per run, ``events.workflow.<run_id>.<type>``.

A run's events are its journal. The worker that owns the run (it holds the run's
queue message, see ``scheduler.workflows``) writes the *worker* events with the run's
expected version; three *external* events (:data:`EXTERNAL_TYPES`) are appended by
anyone without a version check and folded in by the owner when its next append
conflicts: an event sent to the run, a cancel request and a child run's outcome.

Event ids and ``Nats-Msg-Id`` derive from (run, generation, step number, attempt), so a
re-sent append is a duplicate, never a second record (see :func:`step_key`).

Every event here may carry user content (arguments, results): ``carries_content``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from events.catalogue import Event, register
from events.envelope import Aggregate
from events.ids import SafeId

WORKFLOW_AGGREGATE = "workflow"
StepKind = str
"""``function``, ``sleep``, ``event``, ``workflow``, ``patch`` or a custom kind."""
RunOutcomeStatus = Literal["completed", "failed", "canceled"]


def run_aggregate(run_id: str) -> Aggregate:
    """The aggregate of one workflow run (validates ``run_id`` as a subject token)."""
    return Aggregate(WORKFLOW_AGGREGATE, run_id)


def step_key(run_id: str, generation: int, step_no: int, attempt: int, what: str) -> str:
    """The command id (so ``Nats-Msg-Id`` prefix) of a step's event: stable per attempt."""
    return f"wf:{run_id}:g{generation}:s{step_no}:a{attempt}:{what}"


def run_key(run_id: str, generation: int, what: str) -> str:
    """The command id of a run-level event (completed, failed, completion handled ...)."""
    return f"wf:{run_id}:g{generation}:{what}"


class ErrorInfo(BaseModel):
    """A failure as recorded: a stable code and a message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(max_length=100)
    message: str = Field(max_length=4_000)


class _RunEvent(Event):
    aggregate_type: ClassVar[str] = WORKFLOW_AGGREGATE


class _StepOpened(_RunEvent):
    """Fields every event that opens a step carries: what the determinism check compares."""

    generation: int = Field(0, ge=0)
    step_no: int = Field(ge=1)
    name: str = Field(max_length=200)
    kind: StepKind = Field(max_length=100)
    args_hash: str = Field("", max_length=64)


@register
class WorkflowStarted(_RunEvent):
    """A run of ``name`` at ``version`` with ``args``; ``parent_*`` for a child run;
    ``user_id`` who started it."""

    type: Literal["workflow_started"] = "workflow_started"
    run_id: SafeId
    name: SafeId
    version: int = Field(1, ge=1)
    args: Any = None
    parent_run_id: SafeId | None = None
    parent_step: int | None = None
    parent_generation: int | None = None
    on_complete: str | None = Field(None, max_length=200)
    context: Any = None
    user_id: SafeId | None = None
    """The user the run acts for (started on ``cmd.<user_id>.workflow.start``; a child
    run inherits its parent's); None for a run started by the service itself."""


@register
class StepStarted(_StepOpened):
    """An attempt of a step begins (appended before the step's function runs)."""

    type: Literal["step_started"] = "step_started"
    attempt: int = Field(1, ge=1)
    child_run_id: SafeId | None = None


@register
class StepScheduled(_StepOpened):
    """A step asked to start no earlier than ``run_at`` (``run_after`` / ``run_at``)."""

    type: Literal["step_scheduled"] = "step_scheduled"
    run_at: datetime


@register
class StepCompleted(_RunEvent):
    """A step's result: every later replay returns it without running the step."""

    type: Literal["step_completed"] = "step_completed"
    generation: int = Field(0, ge=0)
    step_no: int = Field(ge=1)
    attempt: int = Field(1, ge=1)
    result: Any = None
    event_seq: int | None = None
    """For an ``await_event`` step: the sequence of the ``event_received`` it consumed."""


@register
class StepFailed(_RunEvent):
    """An attempt failed; ``will_retry`` with ``retry_at``, else the step failed for good."""

    type: Literal["step_failed"] = "step_failed"
    generation: int = Field(0, ge=0)
    step_no: int = Field(ge=1)
    attempt: int = Field(1, ge=1)
    error: ErrorInfo
    will_retry: bool = False
    retry_at: datetime | None = None


@register
class SleepScheduled(_StepOpened):
    """A durable sleep until ``wake_at``."""

    type: Literal["sleep_scheduled"] = "sleep_scheduled"
    wake_at: datetime


@register
class EventAwaited(_StepOpened):
    """The run waits for an event named ``event_name`` (until ``timeout_at``, if set)."""

    type: Literal["event_awaited"] = "event_awaited"
    event_name: str = Field(max_length=200)
    timeout_at: datetime | None = None


@register
class PatchMarked(_StepOpened):
    """``step.patched(patch_id)`` answered True here: later replays answer True again."""

    type: Literal["patch_marked"] = "patch_marked"


@register
class RunSuspended(_RunEvent):
    """Every branch of the handler waits: the owner let go of the run until ``wake_at``
    (None: until woken). A sender wakes only a run whose last worker event is this one."""

    type: Literal["run_suspended"] = "run_suspended"
    generation: int = Field(0, ge=0)
    wake_at: datetime | None = None


@register
class EventReceived(_RunEvent):
    """External: ``send_event(run_id, event_name, value)``."""

    type: Literal["event_received"] = "event_received"
    event_name: str = Field(max_length=200)
    value: Any = None
    event_id: SafeId


@register
class CancelRequested(_RunEvent):
    """External: the run stops at its next step boundary."""

    type: Literal["cancel_requested"] = "cancel_requested"
    reason: str = Field("", max_length=1_000)


@register
class ChildCompleted(_RunEvent):
    """External: the outcome of the child run started by step ``step_no``."""

    type: Literal["child_completed"] = "child_completed"
    generation: int = Field(0, ge=0)
    step_no: int = Field(ge=1)
    child_run_id: SafeId
    status: RunOutcomeStatus
    result: Any = None
    error: ErrorInfo | None = None


@register
class WorkflowCompleted(_RunEvent):
    type: Literal["workflow_completed"] = "workflow_completed"
    generation: int = Field(0, ge=0)
    result: Any = None


@register
class WorkflowFailed(_RunEvent):
    type: Literal["workflow_failed"] = "workflow_failed"
    generation: int = Field(0, ge=0)
    error: ErrorInfo


@register
class WorkflowCanceled(_RunEvent):
    type: Literal["workflow_canceled"] = "workflow_canceled"
    generation: int = Field(0, ge=0)
    reason: str = Field("", max_length=1_000)


@register
class CompletionHandled(_RunEvent):
    """``on_complete`` ran (and the parent was told): recorded once per generation."""

    type: Literal["completion_handled"] = "completion_handled"
    generation: int = Field(0, ge=0)
    status: RunOutcomeStatus
    error: ErrorInfo | None = None


@register
class WorkflowRestarted(_RunEvent):
    """A finished run runs again from ``from_step`` (earlier steps keep their results)."""

    type: Literal["workflow_restarted"] = "workflow_restarted"
    generation: int = Field(ge=1)
    from_step: int = Field(1, ge=1)


EXTERNAL_TYPES = frozenset({"event_received", "cancel_requested", "child_completed"})
"""Event types appended by others than the run's owner (no expected version)."""
TERMINAL_TYPES = frozenset({"workflow_completed", "workflow_failed", "workflow_canceled"})
