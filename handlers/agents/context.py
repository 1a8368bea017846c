"""The model's context for a generation, from the thread's in-memory state.

The most recent ``recent_messages`` successful messages up to the prompt's order (tool
messages unless excluded), plus this generation's own prompt and steps; orphaned tool
calls and results are dropped; ``context_handler`` may replace the list. Cost is bounded
by the options, not by the thread's length.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from events.content import ContentPart
from handlers.agents.definition import Agent
from handlers.llm.messages import ContextMessage, remove_orphaned_tool_calls, to_chat_messages
from handlers.thread_state import ThreadState


def build_context(state: ThreadState, agent: Agent, order: int, step_order: int,
                  found: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """``found``: message rows of a search (``query.messages.search`` items), placed
    before the recent messages, minus those already among them."""
    opts = agent.context_options
    picked = []
    for m in state.recent.values():
        if m.order > order or (m.order == order and m.step_order >= step_order):
            continue
        if m.status != "success" or not m.content:
            continue
        if opts.exclude_tool_messages and (m.role == "tool" or any(
                p.type == "tool_call" for p in m.content)):
            continue
        picked.append(m)
    picked.sort(key=lambda m: (m.order, m.step_order))
    picked = picked[-opts.recent_messages:] if opts.recent_messages > 0 else []
    recent_ids = {m.message_id for m in picked}
    earlier = [ContextMessage(role=r["role"], content=_parts(r["content"]),
                              message_id=r["message_id"])
               for r in found or [] if r["message_id"] not in recent_ids
               and (r["order"], r["step_order"]) < (order, step_order)]
    context = remove_orphaned_tool_calls(earlier + [
        ContextMessage(role=m.role, content=m.content, message_id=m.message_id)  # type: ignore[arg-type]
        for m in picked])
    messages = to_chat_messages(context, system=agent.instructions)
    if agent.context_handler is not None:
        messages = agent.context_handler(messages)
    return messages


_PARTS: TypeAdapter[list[ContentPart]] = TypeAdapter(list[ContentPart])


def _parts(content: Any) -> list[ContentPart]:
    return _PARTS.validate_python(content or [])
