"""What a model call returns: the final ``ModelResult`` and the deltas of a stream."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from events.content import ContentPart, TextPart, ToolCallPart, Usage


@dataclass(frozen=True)
class ToolCall:
    """A tool call the model asked for. ``args`` is the parsed JSON object; when the model
    sent arguments that are not a JSON object, ``args`` is empty and ``args_error`` says why
    (``execute_tool_call`` then returns an error result to the model)."""

    id: str
    name: str
    args: dict[str, Any]
    raw_args: str = ""
    args_error: str | None = None

    def to_part(self) -> ToolCallPart:
        return ToolCallPart(tool_call_id=self.id, tool_name=self.name, args=self.args)


def parse_tool_call(call_id: str, name: str, raw_args: str | None) -> ToolCall:
    """A ``ToolCall`` from the provider's JSON argument text (errors kept, not raised)."""
    raw = raw_args or ""
    if not raw.strip():
        return ToolCall(call_id, name, {}, raw)
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        return ToolCall(call_id, name, {}, raw, f"arguments are not valid JSON: {exc}")
    if not isinstance(parsed, dict):
        return ToolCall(call_id, name, {}, raw,
                        f"arguments must be a JSON object, got {type(parsed).__name__}")
    return ToolCall(call_id, name, parsed, raw)


@dataclass(frozen=True)
class ModelResult:
    """The outcome of one model step (one logical call, whatever the retries).

    ``call_id`` is the same for every retry and fallback of the step, so usage recorded
    under it is recorded once. ``model`` is the model that answered (a fallback, perhaps).
    ``finish_reason`` is the provider's (``stop``, ``tool_calls``, ``length``...) or
    ``aborted`` for a stream stopped by its caller; then ``usage`` counts what was streamed.
    ``usage_estimated`` is true when the provider reported no usage (a stream without a
    usage chunk, or one cut short): ``usage`` is then a count of the text, not the bill.
    """

    call_id: str
    model: str
    provider: str | None
    text: str
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str
    usage: Usage
    cost: float
    attempts: int = 1
    response_id: str | None = None
    provider_metadata: dict[str, Any] = field(default_factory=dict)
    usage_estimated: bool = False

    @property
    def aborted(self) -> bool:
        return self.finish_reason == "aborted"

    def content_parts(self) -> list[ContentPart]:
        """The assistant message content: text (if any) then the tool calls."""
        parts: list[ContentPart] = []
        if self.text:
            parts.append(TextPart(text=self.text))
        parts.extend(call.to_part() for call in self.tool_calls)
        return parts


@dataclass(frozen=True)
class TextDelta:
    """A piece of streamed text."""

    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a streamed tool call. ``index`` identifies the call within the step; ``id``
    and ``name`` come with the first piece, ``args_delta`` is a fragment of the JSON text."""

    index: int
    id: str | None
    name: str | None
    args_delta: str


StreamEvent = TextDelta | ToolCallDelta | ModelResult
"""What a model stream yields: deltas, and last of all the ``ModelResult``."""
