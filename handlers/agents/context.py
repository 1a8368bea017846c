"""The model's context for a generation, from the thread's in-memory state.

The most recent ``recent_messages`` successful messages up to the prompt's order (tool
messages unless excluded), plus this generation's own prompt and steps; orphaned tool
calls and results are dropped; ``context_handler`` may replace the list. Cost is bounded
by the options, not by the thread's length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter

from events.content import ContentPart, ToolCallPart, ToolResultPart
from handlers.agents.definition import Agent
from handlers.llm.messages import (
    ContextMessage,
    message_to_chat,
    remove_orphaned_tool_calls,
    to_chat_messages,
)
from handlers.threads.state import RecentMessage, ThreadState


def build_context(state: ThreadState, agent: Agent, order: int, step_order: int,
                  found: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """``found``: message rows of a search (``query.messages.search`` items), placed
    before the recent messages, minus those already among them."""
    opts = agent.context_options
    picked = _recent(state, opts.recent_messages, (order, step_order),
                     opts.exclude_tool_messages)
    recent_ids = {m.message_id for m in picked}
    earlier = [ContextMessage(role=r["role"], content=_parts(r["content"]),
                              message_id=r["message_id"])
               for r in found or [] if r["message_id"] not in recent_ids
               and (r["order"], r["step_order"]) < (order, step_order)]
    entries: list[ContextMessage | RecentMessage] = [*earlier, *picked]
    # Orphaned tool calls and results can only be in messages with tool parts: those are
    # fixed and converted each time; the others convert once (cached on the state).
    with_tools = {id(e) for e in entries if _has_tool_parts(e.content)}
    fixed = {m.message_id: m for m in remove_orphaned_tool_calls(
        [_context_message(e) for e in entries if id(e) in with_tools])}
    messages = to_chat_messages([], system=agent.instructions)
    for e in entries:
        if id(e) in with_tools:
            kept = fixed.get(e.message_id)
            if kept is not None:
                messages += message_to_chat(kept.role, kept.content)
        elif isinstance(e, RecentMessage):
            if e.chat is None:
                e.chat = message_to_chat(e.role, e.content)
            messages += [dict(m) for m in e.chat]  # callers may change their copy
        else:
            messages += message_to_chat(e.role, e.content)
    if agent.context_handler is not None:
        messages = agent.context_handler(messages)
    return messages


def _recent(state: ThreadState, limit: int, before: tuple[int, int],
            exclude_tools: bool) -> list[RecentMessage]:
    """The last ``limit`` successful messages with content before ``before`` (order,
    step_order), in that order. Reads the tail of ``state.recent`` when it is in order
    (the usual case: cost bounded by ``limit``), else sorts it."""
    if limit <= 0:
        return []

    def wanted(m: RecentMessage) -> bool:
        if (m.order, m.step_order) >= before or m.status != "success" or not m.content:
            return False
        return not (exclude_tools and (m.role == "tool" or any(
            p.type == "tool_call" for p in m.content)))

    if state.recent_in_order:
        picked: list[RecentMessage] = []
        for m in reversed(state.recent.values()):
            if wanted(m):
                picked.append(m)
                if len(picked) == limit:
                    break
        picked.reverse()
        return picked
    picked = [m for m in state.recent.values() if wanted(m)]
    picked.sort(key=lambda m: (m.order, m.step_order))
    return picked[-limit:]


def _has_tool_parts(content: Sequence[ContentPart]) -> bool:
    return any(isinstance(p, ToolCallPart | ToolResultPart) for p in content)


def _context_message(e: ContextMessage | RecentMessage) -> ContextMessage:
    if isinstance(e, ContextMessage):
        return e
    return ContextMessage(role=e.role, content=e.content,  # type: ignore[arg-type]
                          message_id=e.message_id)


_PARTS: TypeAdapter[list[ContentPart]] = TypeAdapter(list[ContentPart])


def _parts(content: Any) -> list[ContentPart]:
    return _PARTS.validate_python(content or [])
