"""Message content: text, tool call and tool result parts, and token usage."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextPart(_Part):
    type: Literal["text"] = "text"
    text: str


class ToolCallPart(_Part):
    type: Literal["tool_call"] = "tool_call"
    tool_call_id: str
    tool_name: str
    args: dict[str, Any] = Field(default_factory=dict)


class ToolResultPart(_Part):
    type: Literal["tool_result"] = "tool_result"
    tool_call_id: str
    tool_name: str
    result: Any = None
    is_error: bool = False


ContentPart = Annotated[TextPart | ToolCallPart | ToolResultPart, Field(discriminator="type")]
Role = Literal["system", "user", "assistant", "tool"]
MessageStatus = Literal["pending", "success", "failed"]


class Usage(BaseModel):
    """Token counts of one model call. ``total_tokens`` is prompt + completion."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)
    total_tokens: int = Field(0, ge=0)
    reasoning_tokens: int = Field(0, ge=0)
    cached_input_tokens: int = Field(0, ge=0)
    cache_write_tokens: int = Field(0, ge=0)


def text_of(parts: list[Any]) -> str:
    """The concatenated text parts of a message (tool parts excluded)."""
    return "".join(p.text for p in parts if isinstance(p, TextPart))
