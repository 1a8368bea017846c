"""Replies that a test or demo queues for the scripted model."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ScriptedToolCall:
    """A tool call the scripted model makes. ``id`` defaults to a deterministic one."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None
    raw_args: str | None = None
    """Sent instead of ``json.dumps(args)`` when set (to script malformed arguments)."""

    def arguments_json(self) -> str:
        return self.raw_args if self.raw_args is not None else json.dumps(dict(self.args))


@dataclass(frozen=True)
class Reply:
    """One scripted model answer: text and/or tool calls, or an error, or a hang.

    * ``error_status``: the call fails with that HTTP status (litellm maps it to its
      ``RateLimitError``, ``InternalServerError``, ``BadRequestError``...). When the reply
      also has ``content``, a *stream* yields that content first and then fails.
    * ``hang``: the call never answers (until cancelled), to exercise timeouts; with
      ``content``, a stream yields the content and then hangs (to exercise aborts).
    * ``usage``: ``(prompt_tokens, completion_tokens)`` to report instead of the counts.
    """

    content: str = ""
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    finish_reason: str | None = None
    error_status: int | None = None
    error_message: str = "scripted failure"
    hang: bool = False
    usage: tuple[int, int] | None = None

    @classmethod
    def text(cls, text: str) -> Reply:
        return cls(content=text)

    @classmethod
    def tool_call(cls, name: str, args: Mapping[str, Any] | None = None, *,
                  id: str | None = None, text: str = "") -> Reply:
        return cls(content=text, tool_calls=(ScriptedToolCall(name, dict(args or {}), id),))

    @classmethod
    def parallel_tool_calls(cls, calls: Iterable[ScriptedToolCall], *,
                            text: str = "") -> Reply:
        return cls(content=text, tool_calls=tuple(calls))

    @classmethod
    def json(cls, obj: Any) -> Reply:
        """A structured-output answer: ``obj`` serialised as JSON text."""
        return cls(content=json.dumps(obj))

    @classmethod
    def invalid_json(cls, text: str = '{"unterminated": ') -> Reply:
        """Text that is not valid JSON, to exercise structured-output repair."""
        return cls(content=text)

    @classmethod
    def error(cls, status: int, message: str = "scripted failure", *,
              after_text: str = "") -> Reply:
        return cls(content=after_text, error_status=status, error_message=message)

    @classmethod
    def hanging(cls, *, after_text: str = "") -> Reply:
        return cls(content=after_text, hang=True)

    def resolved_finish_reason(self) -> str:
        if self.finish_reason is not None:
            return self.finish_reason
        return "tool_calls" if self.tool_calls else "stop"
