"""Events of the thread aggregate: its lifecycle, messages, tool calls and approvals."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, FiniteFloat, model_validator

from events.catalogue import Event, register
from events.content import ContentPart, MessageStatus, Role, Usage
from events.ids import SafeId


@register
class ThreadCreated(Event):
    type: Literal["thread_created"] = "thread_created"
    thread_id: SafeId
    user_id: SafeId | None = None
    title: str | None = None
    summary: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


@register
class ThreadMetadataUpdated(Event):
    type: Literal["thread_metadata_updated"] = "thread_metadata_updated"
    thread_id: SafeId
    title: str | None = None
    summary: str | None = None
    status: Literal["active", "archived"] | None = None
    metadata: dict[str, Any] | None = None


@register
class ThreadDeleted(Event):
    """The thread is gone. Its content subjects are purged from the log after this event."""

    type: Literal["thread_deleted"] = "thread_deleted"
    thread_id: SafeId
    carries_content: ClassVar[bool] = False


@register
class MessageSaved(Event):
    """A message in a thread. ``order`` groups a prompt with its response steps
    (``step_order`` 0, 1, 2...), as in Convex Agent."""

    type: Literal["message_saved"] = "message_saved"
    message_id: SafeId
    thread_id: SafeId
    order: int = Field(ge=0)
    step_order: int = Field(0, ge=0)
    role: Role
    content: list[ContentPart]
    status: MessageStatus = "success"
    agent_name: str | None = None
    model: str | None = None
    provider: str | None = None
    usage: Usage | None = None
    finish_reason: str | None = None
    error: str | None = None
    error_code: str | None = Field(None, max_length=100)
    """The error's stable code (``ThreadlogError.code``) beside its text, when failed."""
    prompt_message_id: str | None = None


@register
class MessageStatusChanged(Event):
    type: Literal["message_status_changed"] = "message_status_changed"
    message_id: SafeId
    thread_id: SafeId
    status: MessageStatus
    error: str | None = None
    error_code: str | None = Field(None, max_length=100)
    """The error's stable code beside its text (absent in events written before it)."""


@register
class MessageFinalized(Event):
    """A pending message's final content and status (the end of a generation step)."""

    type: Literal["message_finalized"] = "message_finalized"
    message_id: SafeId
    thread_id: SafeId
    status: MessageStatus
    content: list[ContentPart] = Field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str | None = None
    error: str | None = None
    error_code: str | None = Field(None, max_length=100)
    """The error's stable code (``ThreadlogError.code``: ``rate_limited``,
    ``invalid_model_output``, ``timeout``...) beside its text, on a failed message
    (absent in events written before it)."""
    model: str | None = None
    provider: str | None = None
    cost: float | None = None
    """This step's model call cost (USD), when known."""
    generation: dict[str, Any] | None = None
    """On a generation's last message: its totals (``steps``, ``usage``, ``cost``), so a
    re-sent command is answered from the thread's events alone."""


MAX_EMBEDDING_DIMENSIONS = 8_192
"""Longest vector a message embedding (or a vector search) may have."""


@register
class MessageEmbedded(Event):
    """The embedding of a message's text by ``model`` (for vector search). On the thread's
    subject, so deleting the thread purges it with the message. A later embedding of the
    same message replaces the earlier one."""

    type: Literal["message_embedded"] = "message_embedded"
    message_id: SafeId
    thread_id: SafeId
    model: str = Field(min_length=1, max_length=200)
    dimensions: int = Field(ge=1, le=MAX_EMBEDDING_DIMENSIONS)
    vector: list[FiniteFloat] = Field(min_length=1, max_length=MAX_EMBEDDING_DIMENSIONS)

    @model_validator(mode="after")
    def _dimensions_match(self) -> MessageEmbedded:
        if len(self.vector) != self.dimensions:
            raise ValueError(f"vector has {len(self.vector)} values, dimensions is "
                             f"{self.dimensions}")
        return self


@register
class ToolCallRequested(Event):
    type: Literal["tool_call_requested"] = "tool_call_requested"
    thread_id: SafeId
    message_id: SafeId
    tool_call_id: str
    tool_name: str
    args: dict[str, Any] = Field(default_factory=dict)


@register
class ToolCallCompleted(Event):
    type: Literal["tool_call_completed"] = "tool_call_completed"
    thread_id: SafeId
    message_id: SafeId
    tool_call_id: str
    tool_name: str
    result: Any = None


@register
class ToolCallFailed(Event):
    type: Literal["tool_call_failed"] = "tool_call_failed"
    thread_id: SafeId
    message_id: SafeId
    tool_call_id: str
    tool_name: str
    error: str


@register
class ToolApprovalRequested(Event):
    type: Literal["tool_approval_requested"] = "tool_approval_requested"
    thread_id: SafeId
    message_id: SafeId
    tool_call_id: str
    tool_name: str
    args: dict[str, Any] = Field(default_factory=dict)


@register
class ToolApprovalDecided(Event):
    type: Literal["tool_approval_decided"] = "tool_approval_decided"
    thread_id: SafeId
    tool_call_id: str
    approved: bool
    decided_by: str | None = None
    reason: str | None = None
