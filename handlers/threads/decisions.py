"""Pure decisions of the thread commands: (state, command) -> events and a result.

No I/O here. Each function raises a :class:`ThreadlogError` for a command that must be
refused; the runner turns it into an error reply and appends nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from events import (
    Forbidden,
    MessageEmbedded,
    MessageSaved,
    NotFound,
    ThreadCreated,
    ThreadDeleted,
    ThreadlogError,
    ThreadMetadataUpdated,
    ValidationFailed,
    derived_id,
)
from events.catalogue import Event
from handlers.threads.commands import CreateThread, DeleteThread, SaveMessages, UpdateThread
from handlers.threads.state import ThreadState


@dataclass
class Decision:
    events: list[Event]
    result: dict[str, Any]
    after: Callable[[], Awaitable[None]] | None = field(default=None)


def thread_id_for(cmd: CreateThread) -> str:
    return cmd.thread_id or derived_id("thread", cmd.user_id, cmd.command_id)


def require_owned(state: ThreadState, user_id: str) -> None:
    """The thread exists, is not deleted, and belongs to ``user_id``."""
    if not state.exists or state.deleted:
        raise NotFound(f"thread {state.thread_id!r} not found",
                       details={"thread_id": state.thread_id})
    if state.user_id is not None and state.user_id != user_id:
        raise Forbidden(f"thread {state.thread_id!r} belongs to another user",
                        details={"thread_id": state.thread_id})


def create_thread(state: ThreadState, cmd: CreateThread) -> Decision:
    if state.exists:
        raise ThreadlogError(f"thread {state.thread_id!r} already exists",
                             code="already_exists", details={"thread_id": state.thread_id})
    ev = ThreadCreated(thread_id=state.thread_id, user_id=cmd.user_id, title=cmd.title,
                       summary=cmd.summary, metadata=cmd.metadata)
    return Decision([ev], {"thread_id": state.thread_id})


def update_thread(state: ThreadState, cmd: UpdateThread) -> Decision:
    require_owned(state, cmd.user_id)
    ev = ThreadMetadataUpdated(thread_id=state.thread_id, title=cmd.title, summary=cmd.summary,
                               status=cmd.status, metadata=cmd.metadata)
    return Decision([ev], {"thread_id": state.thread_id})


def delete_thread(state: ThreadState, cmd: DeleteThread) -> Decision:
    if state.deleted:  # idempotent: the purge runs again in `after`
        return Decision([], {"thread_id": state.thread_id, "deleted": True})
    require_owned(state, cmd.user_id)
    return Decision([ThreadDeleted(thread_id=state.thread_id)],
                    {"thread_id": state.thread_id, "deleted": True})


def save_messages(state: ThreadState, cmd: SaveMessages) -> Decision:
    """Each message gets the next ``order``, or, answering ``prompt_message_id``, that
    prompt's order and the next ``step_order`` (Convex Agent's numbering)."""
    require_owned(state, cmd.user_id)
    events: list[Event] = []
    out: list[dict[str, Any]] = []
    last_order = state.last_order
    max_step = dict(state.max_step)
    seen = set(state.messages)
    for i, m in enumerate(cmd.messages):
        mid = m.message_id or derived_id("message", cmd.command_id, str(i))
        if mid in seen:
            raise ValidationFailed(f"message {mid!r} already exists in this thread",
                                   details={"message_id": mid, "index": i})
        seen.add(mid)
        if m.prompt_message_id is not None:
            prompt = state.messages.get(m.prompt_message_id)
            if prompt is None:
                raise NotFound(f"prompt message {m.prompt_message_id!r} not found",
                               details={"message_id": m.prompt_message_id, "index": i})
            order = prompt.order
            step = max_step.get(order, 0) + 1
        else:
            order = last_order + 1
            step = 0
        last_order = max(last_order, order)
        max_step[order] = max(max_step.get(order, 0), step)
        events.append(MessageSaved(
            message_id=mid, thread_id=state.thread_id, order=order, step_order=step,
            role=m.role, content=m.content, status=m.status, agent_name=m.agent_name,
            model=m.model, provider=m.provider, error=m.error,
            prompt_message_id=m.prompt_message_id))
        if m.embedding is not None:
            events.append(MessageEmbedded(
                message_id=mid, thread_id=state.thread_id, model=m.embedding.model,
                dimensions=len(m.embedding.vector), vector=m.embedding.vector))
        out.append({"message_id": mid, "order": order, "step_order": step})
    return Decision(events, {"thread_id": state.thread_id, "messages": out})


# -- replies of commands already applied (rebuilt from their events) ---------------------
def replay_thread_result(state: ThreadState, cmd: CreateThread | UpdateThread) -> Decision:
    return Decision([], {"thread_id": state.thread_id})


def replay_delete(state: ThreadState, cmd: DeleteThread) -> Decision:
    return Decision([], {"thread_id": state.thread_id, "deleted": True})


def replay_save_messages(state: ThreadState, cmd: SaveMessages) -> Decision:
    out = [{"message_id": ev.message_id, "order": ev.order, "step_order": ev.step_order}
           for ev in state.commands.get(cmd.command_id, []) if isinstance(ev, MessageSaved)]
    return Decision([], {"thread_id": state.thread_id, "messages": out})
