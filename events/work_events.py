"""Workpool events: one aggregate per work item, ``events.work.<work_id>.<event_type>``.

A work item's life is its log (ARCHITECTURE invariant 10)::

    work_enqueued ─▶ (work_started ─▶ work_failed[will_retry])* ─▶ work_started
        ─▶ work_completed | work_failed[final]        (or work_canceled at any point)
        ─▶ [work_completion_claimed] ─▶ work_completion_handled   (only with on_complete)

Every event is appended with the aggregate's expected version, so two processes can never
both start the same attempt, both finish it, or both record its completion.

``msg_seq`` and ``delivery`` (in ``work_started`` and ``work_completion_claimed``) name
the WORK-stream message, and which delivery of it, that owns the step: a later delivery
of the same message (its worker died or went silent past ``ack_wait``) takes the step
over; an earlier one stands down; any other copy of the item's message defers to the
owner (which is unacknowledged, hence redelivered if its worker dies).

``args``, ``result`` and ``context`` are caller data (JSON): they may hold user content.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from events.catalogue import Event, register
from events.envelope import Aggregate
from events.ids import SafeId

WORK_AGGREGATE = "work"
MAX_ERROR = 4_000


def work_aggregate(work_id: str) -> Aggregate:
    """The aggregate of one work item (validates ``work_id`` as a subject token)."""
    return Aggregate(WORK_AGGREGATE, work_id)


class RetrySpec(BaseModel):
    """The retry behaviour recorded with an item (``max_attempts`` 1 = no retries).

    The delay before attempt ``n + 1`` is ``initial_backoff * base ** (n - 1)`` seconds,
    spread by ``± jitter`` (a fraction)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(ge=1)
    initial_backoff: float = Field(ge=0)
    base: float = Field(ge=1)
    jitter: float = Field(0.0, ge=0, le=1)


class _WorkEvent(Event):
    aggregate_type: ClassVar[str] = WORK_AGGREGATE
    work_id: SafeId


@register
class WorkEnqueued(_WorkEvent):
    """An item of ``pool`` to run ``fn(args)``, not before ``run_at`` (None: now)."""

    type: Literal["work_enqueued"] = "work_enqueued"
    pool: SafeId
    fn: SafeId
    args: Any = None
    on_complete: SafeId | None = None
    context: Any = None
    run_at: datetime | None = None
    retry: RetrySpec


@register
class WorkStarted(_WorkEvent):
    """Attempt ``attempt`` (1-based) began, owned by WORK message ``msg_seq``."""

    type: Literal["work_started"] = "work_started"
    attempt: int = Field(ge=1)
    msg_seq: int = Field(ge=1)
    delivery: int = Field(1, ge=1)
    worker: str = Field("", max_length=200)


@register
class WorkCompleted(_WorkEvent):
    """Attempt ``attempt`` returned ``result``: the item is finished (``success``)."""

    type: Literal["work_completed"] = "work_completed"
    attempt: int = Field(ge=1)
    result: Any = None


@register
class WorkFailed(_WorkEvent):
    """Attempt ``attempt`` raised (or its worker was lost). With ``will_retry`` the next
    attempt is due at ``retry_at``; without, the item is finished (``failed``)."""

    type: Literal["work_failed"] = "work_failed"
    attempt: int = Field(ge=1)
    error: str = Field(max_length=MAX_ERROR)
    error_type: str = Field("", max_length=200)
    will_retry: bool
    retry_at: datetime | None = None


@register
class WorkCanceled(_WorkEvent):
    """The item was canceled before it finished: it is finished (``canceled``); a
    running attempt's result, if any, is discarded."""

    type: Literal["work_canceled"] = "work_canceled"
    reason: str = Field("", max_length=1_000)


@register
class WorkCompletionClaimed(_WorkEvent):
    """WORK message ``msg_seq`` runs ``on_complete`` of a canceled item (a completed or
    failed item's completion belongs to the message of its last attempt: no claim)."""

    type: Literal["work_completion_claimed"] = "work_completion_claimed"
    msg_seq: int = Field(ge=1)
    delivery: int = Field(1, ge=1)


@register
class WorkCompletionHandled(_WorkEvent):
    """``on_complete`` ran (``error`` set when it raised: it is not run again)."""

    type: Literal["work_completion_handled"] = "work_completion_handled"
    error: str | None = Field(None, max_length=MAX_ERROR)


WorkResultKind = Literal["success", "failed", "canceled"]
