"""Conversion between threadlog messages (``events.content`` parts) and OpenAI chat messages.

threadlog -> chat (``to_chat_messages`` for a list, ``message_to_chat(role, content)`` for
one message, ``assistant_message`` / ``tool_messages`` for a step):

* ``system`` / ``user``: text parts joined -> ``{"role", "content": str}``;
* ``assistant``: text -> ``content`` (``None`` when there is only tool calls), tool calls ->
  ``tool_calls`` (arguments as JSON text);
* tool results, in any message: one ``{"role": "tool", "tool_call_id", "content"}`` each;
  the content is the result text, or its JSON; error results are prefixed ``Error: ``.

chat -> threadlog (``from_chat_message``) is the inverse for the same shapes.

``remove_orphaned_tool_calls`` (threadlog messages) and ``remove_orphaned_chat_tool_calls``
(chat dicts) drop tool calls that have no result and results that have no call (e.g. a context
window cut between a call and its result, or a failed step), and then messages left empty:
providers reject both kinds of orphans.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from events.content import ContentPart, Role, TextPart, ToolCallPart, ToolResultPart


class MessageLike(Protocol):
    """Anything with a role and content parts (``ContextMessage``, a projection row...)."""

    @property
    def role(self) -> str: ...

    @property
    def content(self) -> Sequence[ContentPart]: ...


@dataclass(frozen=True)
class ContextMessage:
    """A message of the model's context, as threadlog stores it."""

    role: Role
    content: list[ContentPart]
    message_id: str | None = None


M = TypeVar("M", bound=MessageLike)


def _result_text(part: ToolResultPart) -> str:
    text = part.result if isinstance(part.result, str) else json.dumps(part.result, default=str)
    return f"Error: {text}" if part.is_error else text


def assistant_message(parts: Sequence[ContentPart]) -> dict[str, Any]:
    """The chat message of an assistant step: its text and tool calls (no tool results)."""
    texts = [p.text for p in parts if isinstance(p, TextPart)]
    calls = [p for p in parts if isinstance(p, ToolCallPart)]
    chat: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        chat["tool_calls"] = [
            {"id": c.tool_call_id, "type": "function",
             "function": {"name": c.tool_name, "arguments": json.dumps(c.args)}}
            for c in calls]
    return chat


def tool_messages(results: Iterable[ContentPart]) -> list[dict[str, Any]]:
    """One ``role="tool"`` chat message per tool result part (other parts are ignored)."""
    return [{"role": "tool", "tool_call_id": r.tool_call_id, "content": _result_text(r)}
            for r in results if isinstance(r, ToolResultPart)]


def message_to_chat(role: str, content: Sequence[ContentPart]) -> list[dict[str, Any]]:
    """The chat messages of one threadlog message (its tool results become separate
    ``role="tool"`` messages). A message with nothing to say gives ``[]``."""
    texts = [p.text for p in content if isinstance(p, TextPart)]
    has_calls = any(isinstance(p, ToolCallPart) for p in content)
    out: list[dict[str, Any]] = []
    if role == "assistant" and (texts or has_calls):
        out.append(assistant_message(content))
    elif role in ("system", "user") and texts:
        out.append({"role": role, "content": "".join(texts)})
    out.extend(tool_messages(content))
    return out


def to_chat_messages(messages: Iterable[MessageLike], *,
                     system: str | None = None) -> list[dict[str, Any]]:
    """Chat messages for litellm, with ``system`` (the agent's instructions) first if given."""
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in messages:
        out.extend(message_to_chat(message.role, message.content))
    return out


def from_chat_message(chat: Mapping[str, Any], *,
                      tool_names: Mapping[str, str] | None = None) -> ContextMessage:
    """A threadlog message from one chat message. ``tool_names`` maps tool call ids to tool
    names for ``role="tool"`` messages (which carry only the id)."""
    role = chat.get("role")
    content = chat.get("content")
    text = content if isinstance(content, str) else "".join(
        str(p.get("text", "")) for p in content or () if isinstance(p, Mapping))
    if role == "tool":
        call_id = str(chat.get("tool_call_id", ""))
        name = str(chat.get("name") or (tool_names or {}).get(call_id, ""))
        is_error = text.startswith("Error: ")
        return ContextMessage("tool", [ToolResultPart(
            tool_call_id=call_id, tool_name=name,
            result=text.removeprefix("Error: ") if is_error else text, is_error=is_error)])
    if role not in ("system", "user", "assistant"):
        raise ValueError(f"unsupported chat role: {role!r}")
    parts: list[ContentPart] = [TextPart(text=text)] if text else []
    for call in chat.get("tool_calls") or ():
        function = call.get("function", {})
        raw = function.get("arguments") or "{}"
        args = json.loads(raw) if isinstance(raw, str) else dict(raw)
        parts.append(ToolCallPart(tool_call_id=str(call.get("id", "")),
                                  tool_name=str(function.get("name", "")), args=args))
    return ContextMessage(role, parts)


def _with_content(message: M, content: list[ContentPart]) -> M:
    if isinstance(message, BaseModel):
        return message.model_copy(update={"content": content})
    if dataclasses.is_dataclass(message) and not isinstance(message, type):
        return dataclasses.replace(message, content=content)
    raise TypeError(f"cannot rebuild a {type(message).__name__} with new content")


def remove_orphaned_chat_tool_calls(messages: Sequence[Mapping[str, Any]]
                                     ) -> list[dict[str, Any]]:
    """The same for chat dicts: ``messages`` without unmatched ``tool_calls`` entries and
    without ``role="tool"`` messages whose call is absent; an assistant message left with
    neither text nor calls is dropped. Order is kept; the input is not mutated."""
    call_ids = {str(c.get("id")) for m in messages for c in m.get("tool_calls") or ()}
    result_ids = {str(m.get("tool_call_id")) for m in messages if m.get("role") == "tool"}
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.get("role") == "tool":
            if str(message.get("tool_call_id")) in call_ids:
                out.append(dict(message))
            continue
        calls = message.get("tool_calls")
        if not calls:
            out.append(dict(message))
            continue
        kept = [c for c in calls if str(c.get("id")) in result_ids]
        rebuilt = {k: v for k, v in message.items() if k != "tool_calls"}
        if kept:
            rebuilt["tool_calls"] = kept
        if kept or rebuilt.get("content"):
            out.append(rebuilt)
    return out


def remove_orphaned_tool_calls(messages: Sequence[M]) -> list[M]:
    """Threadlog ``messages`` without unmatched tool call / result
    parts, and without messages that only held such parts. Order is kept; messages with
    nothing to drop are returned as they are. Messages must be pydantic models or
    dataclasses (to be rebuilt with less content)."""
    call_ids = {p.tool_call_id for m in messages for p in m.content
                if isinstance(p, ToolCallPart)}
    result_ids = {p.tool_call_id for m in messages for p in m.content
                  if isinstance(p, ToolResultPart)}
    out: list[M] = []
    for message in messages:
        kept = [p for p in message.content
                if not (isinstance(p, ToolCallPart) and p.tool_call_id not in result_ids)
                and not (isinstance(p, ToolResultPart) and p.tool_call_id not in call_ids)]
        if len(kept) == len(message.content):
            out.append(message)
        elif kept:
            out.append(_with_content(message, kept))
    return out
