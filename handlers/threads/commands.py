"""Thread command models. Every command has a ``command_id`` (idempotency key) and a ``user_id``.

Validation here is the first line of defence: ids are safe subject tokens, texts and
lists are bounded. Anything that fails becomes an ``invalid_input`` reply and appends
nothing.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, FiniteFloat, field_validator

from events import ContentPart, SafeId, TextPart
from events.content import MessageStatus, Role
from events.thread_events import MAX_EMBEDDING_DIMENSIONS
from handlers.commands import STRICT_INPUT, Command

MAX_TEXT = 200_000
MAX_MESSAGES = 100


class CreateThread(Command):
    thread_id: SafeId | None = Field(None, description="defaults to an id derived from command_id")
    title: str | None = Field(None, max_length=1_000)
    summary: str | None = Field(None, max_length=10_000)
    metadata: dict[str, Any] = Field(default_factory=dict)


class UpdateThread(Command):
    thread_id: SafeId
    title: str | None = Field(None, max_length=1_000)
    summary: str | None = Field(None, max_length=10_000)
    status: Literal["active", "archived"] | None = None
    metadata: dict[str, Any] | None = None


WAIT_FIELD_DESCRIPTION = (
    "true (default): reply once the content is purged; false: reply at once and purge in "
    "the background (durably: resumed after a crash; see cmd.deletion.pending)")


class DeleteThread(Command):
    thread_id: SafeId
    wait: bool = Field(True, description=WAIT_FIELD_DESCRIPTION)


class DeleteUserData(Command):
    """Delete every thread (and its messages) of ``user_id``. Usage records stay."""

    wait: bool = Field(True, description=WAIT_FIELD_DESCRIPTION)


class PendingDeletions(Command):
    """The purges still owed by asynchronous deletions of ``user_id`` (of one thread with
    ``thread_id``), waiting up to ``wait_s`` seconds for them to finish. Appends nothing."""

    thread_id: SafeId | None = None
    wait_s: float = Field(0.0, ge=0.0, le=60.0, allow_inf_nan=False)


class Embedding(BaseModel):
    """A precomputed embedding of a message's text (Convex's ``embeddings`` of
    ``saveMessages``): found by vector searches with the same ``model``."""

    model_config = STRICT_INPUT

    model: str = Field(min_length=1, max_length=200, description="the embedding model")
    vector: list[FiniteFloat] = Field(min_length=1, max_length=MAX_EMBEDDING_DIMENSIONS)


class NewMessage(BaseModel):
    """A message to save. ``content`` may be a plain string (one text part)."""

    model_config = STRICT_INPUT

    message_id: SafeId | None = None
    role: Role
    content: list[ContentPart] = Field(max_length=1_000)
    status: MessageStatus = "success"
    prompt_message_id: SafeId | None = Field(
        None, description="a response to this prompt: same order, next step_order")
    agent_name: str | None = Field(None, max_length=200)
    model: str | None = Field(None, max_length=200)
    provider: str | None = Field(None, max_length=200)
    error: str | None = Field(None, max_length=10_000)
    embedding: Embedding | None = Field(None, description="saved as message_embedded "
                                        "with the message (for vector search)")

    @field_validator("content", mode="before")
    @classmethod
    def _text_shorthand(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [TextPart(text=v)]
        return v

    @field_validator("content")
    @classmethod
    def _bounded(cls, v: list[ContentPart]) -> list[ContentPart]:
        size = sum(len(p.text) for p in v if isinstance(p, TextPart))
        if size > MAX_TEXT:
            raise ValueError(f"text is {size} characters; the limit is {MAX_TEXT}")
        return v


class SaveMessages(Command):
    thread_id: SafeId
    messages: list[NewMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
