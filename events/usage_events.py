"""Billing events. They live on the ``usage.<user_id>`` aggregate, not on the thread, so
deleting a thread's content leaves billing intact; they carry no message content."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field

from events.catalogue import Event, register
from events.content import Usage
from events.ids import SafeId


@register
class UsageRecorded(Event):
    """One model or embedding call. ``call_id`` is unique per call; the event id derives
    from it, so a re-append is a duplicate, never a second charge."""

    type: Literal["usage_recorded"] = "usage_recorded"
    aggregate_type: ClassVar[str] = "usage"
    carries_content: ClassVar[bool] = False
    call_id: str
    user_id: SafeId | None = None
    thread_id: SafeId | None = None
    agent_name: str | None = None
    model: str
    provider: str | None = None
    usage: Usage
    cost: float = Field(0.0, ge=0)
    kind: Literal["completion", "embedding"] = "completion"
    at: datetime | None = None
    provider_metadata: dict[str, Any] = Field(default_factory=dict)
    estimated: bool = False
    """True when the provider reported no usage for the call (a stream without a usage
    chunk): the token counts are litellm's (or threadlog's) count of the text, which can
    be far from what the provider bills. False in events written before it."""
