"""Agent commands: generate (text or object, optionally streamed), abort, tool approval."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from events import SafeId
from handlers.commands import Command
from handlers.threads.commands import MAX_TEXT

MAX_DEADLINE_S = 3_600.0
"""The longest ``Generate.deadline_s`` accepted (one hour)."""


class Generate(Command):
    """Run ``agent`` in ``thread_id`` on a new ``prompt`` or an existing
    ``prompt_message_id`` (retry-safe: the prompt is not saved again)."""

    agent: str = Field(max_length=200)
    thread_id: SafeId
    prompt: str | None = Field(None, max_length=MAX_TEXT)
    prompt_message_id: SafeId | None = None
    stream: bool = False
    max_steps: int | None = Field(None, ge=1, le=50)
    output_schema: dict[str, Any] | None = Field(
        None, description="JSON schema: generate an object instead of text")
    deadline_s: float | None = Field(
        None, gt=0, le=MAX_DEADLINE_S,
        description="seconds the generation may run (from when its steps start in the "
                    "handler): past it, it stops and fails with code 'timeout'; the client "
                    "waits this long plus a margin for the reply")
    canvas_selection: list[SafeId] = Field(
        default_factory=list, max_length=1_000,
        description="canvas element ids the prompt refers to: their edits become context")

    @model_validator(mode="after")
    def _one_prompt(self) -> Generate:
        if (self.prompt is None) == (self.prompt_message_id is None):
            raise ValueError("give exactly one of prompt or prompt_message_id")
        return self


class Abort(Command):
    thread_id: SafeId
    message_id: SafeId
    reason: str = Field("aborted", max_length=1_000)


class DecideApproval(Command):
    thread_id: SafeId
    tool_call_id: str = Field(max_length=200)
    approved: bool
    reason: str | None = Field(None, max_length=1_000)
