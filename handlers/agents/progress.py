"""Replaying a generation's journal: the thread's own events, by ids derived from the
``generate`` command id.

A generation of command ``c`` is the chain of assistant messages ``reply(c, 0)`` (its
first pending message, at step ``s``), ``reply(c, s+2)``, ``reply(c, s+4)``...; between
two links, a model step finalized with tool calls (``c-s<k>a``) and the tool message
``tool(c, k)`` with the results (``c-s<k>``). :func:`progress` walks the chain on the
thread state and says where the generation is:

- ``finished``: the last link is finalized without tool calls left to run (or paused
  for approvals): the generation's result is recorded (:func:`recorded_result`);
- ``calls`` non-empty: the last link's model output is saved but the step is not
  complete: resume with those tools (``handlers.agents.steps``: a step's events are a
  chain a crash can cut short; the missing ``tool_call_requested`` events are appended,
  and the tools run again - at least once - only if their results are not saved);
- an approval continuation (``handlers.agents.approvals``: its first pending message,
  at step ``s+2``, saved with the decision that completed the paused step ``s``) whose
  tool step is not complete: ``step`` is ``s`` and ``calls`` the paused step's (the
  approved ones run, denied ones answer an error; saved results are reused);
- otherwise the last link is pending: resume with a model call at that step. A model
  call whose usage was recorded but whose output was not saved (the process died in
  between) is made again: both calls are billed, as both were made.

Guarantees: pure (reads the state; :func:`recorded_result` may read the thread's
``message_finalized`` events from the log when the state no longer remembers them).

Failure modes: ``None`` when the thread holds no pending message of the command (it
never started, or the thread was deleted).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from events import (
    EventStore,
    MessageFinalized,
    MessageSaved,
    TextPart,
    ThreadlogError,
    ToolApprovalDecided,
    ToolCallPart,
    ToolResultPart,
    Usage,
    derived_id,
)
from handlers.agents.result import GenerationResult, add_usage
from handlers.threads.state import ThreadState


@dataclass
class Progress:
    message_id: str
    """The chain's last message."""
    step: int
    """Its ``step_order``."""
    order: int
    prompt_message_id: str | None
    finished: bool
    model_steps: int = 0
    """Model steps saved before ``message_id`` (finalized tool-call steps)."""
    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    calls: list[ToolCallPart] = field(default_factory=list)
    content: list[Any] = field(default_factory=list)
    """The content of the saved model step whose ``calls`` have no results yet."""
    final: MessageFinalized | None = None


def _finalized(state: ThreadState, command_id: str, tag: str, message_id: str
               ) -> MessageFinalized | None:
    for e in state.commands.get(f"{command_id}-{tag}", []):
        if isinstance(e, MessageFinalized) and e.message_id == message_id:
            return e
    return None


def progress(state: ThreadState, command_id: str) -> Progress | None:
    """Where the generation of ``command_id`` is in ``state`` (see the module)."""
    mid = derived_id("reply", command_id, "0")
    info = state.messages.get(mid)
    if info is None:
        return None
    prompt = derived_id("prompt", command_id)
    p = Progress(mid, info.step_order, info.order,
                 prompt if prompt in state.messages else None, finished=False)
    for e in state.commands.get(command_id + "-p", []):
        if getattr(e, "message_id", None) == mid:
            p.prompt_message_id = getattr(e, "prompt_message_id", p.prompt_message_id)
    while True:
        info = state.messages[p.message_id]
        if info.status == "pending":
            if p.message_id == mid:
                _continuation(state, command_id, p)
            return p
        step_ev = _finalized(state, command_id, f"s{p.step}a", p.message_id)
        nxt = derived_id("reply", command_id, str(p.step + 2))
        if step_ev is not None and nxt in state.messages:
            p.model_steps += 1
            p.usage = add_usage(p.usage, step_ev.usage or Usage())
            p.cost += step_ev.cost or 0.0
            p.message_id, p.step = nxt, p.step + 2
            continue
        if step_ev is not None and info.status == "success":
            calls = [c for c in step_ev.content if isinstance(c, ToolCallPart)]
            if calls and not any(c.tool_call_id in state.approvals for c in calls):
                p.calls, p.content = calls, list(step_ev.content)
                p.model_steps += 1
                p.usage = add_usage(p.usage, step_ev.usage or Usage())
                p.cost += step_ev.cost or 0.0
                return p
        p.finished = True
        p.final = _finalized(state, command_id, "final", p.message_id)
        return p


def _continuation(state: ThreadState, command_id: str, p: Progress) -> None:
    """An approval continuation (``handlers.agents.approvals``) whose tool step is not
    complete: its first pending message (step ``s+2``) was saved with the decision, the
    tools of the paused step ``s`` not (or their chain ``<command>-s<s>`` cut short).
    Sets ``p.step`` to ``s`` and ``p.calls``/``p.content`` to the paused step's."""
    own = state.commands.get(command_id + "-p", [])
    decided = [e for e in own if isinstance(e, ToolApprovalDecided)]
    if not decided:
        return
    s = p.step - 2
    chain = state.commands.get(f"{command_id}-s{s}", [])
    tool_msg = next((e for e in chain if isinstance(e, MessageSaved)), None)
    if tool_msg is not None and len(chain) >= 1 + sum(
            1 for c in tool_msg.content if isinstance(c, ToolResultPart)):
        return  # the tool step is complete: the next is a model call
    order = state.messages[p.message_id].order
    paused_id = next((m.message_id for m in reversed(state.recent.values())
                      if m.order == order and m.step_order == s and m.role == "assistant"),
                     None)
    if paused_id is None:
        pa = state.approvals.get(decided[0].tool_call_id)
        paused_id = pa.message_id if pa is not None else None
    content = _content_of(state, paused_id) if paused_id is not None else None
    if content is None:
        return
    p.step, p.content = s, content
    p.calls = [c for c in content if isinstance(c, ToolCallPart)]


def _content_of(state: ThreadState, message_id: str) -> list[Any] | None:
    """The content of a finalized message, from the recent messages or its event."""
    rec = state.recent.get(message_id)
    if rec is not None and rec.status != "pending":
        return list(rec.content)
    for evs in reversed(state.commands.values()):
        for e in evs:
            if isinstance(e, MessageFinalized) and e.message_id == message_id:
                return list(e.content)
    return None


async def recorded_result(store: EventStore, state: ThreadState, command_id: str,
                          p: Progress, *, with_object: bool = False) -> GenerationResult:
    """The result of the finished generation ``p`` from its final ``message_finalized``
    (read from the log if the state no longer remembers it). A failed generation raises
    its error again."""
    final = p.final
    if final is None:
        async for rec in store.replay(subject=state.aggregate.subject("message_finalized")):
            ev = rec.event
            if isinstance(ev, MessageFinalized) and ev.message_id == p.message_id:
                final = ev
    if final is None:  # paused for approvals: the step's own event
        final = _finalized(state, command_id, f"s{p.step}", p.message_id)
    if final is None:
        raise ThreadlogError(f"generation {command_id!r} has no final message",
                             code="not_found", details={"command_id": command_id})
    if final.status == "failed":
        code = final.error_code or ("aborted" if final.finish_reason == "aborted" or "abort" in (
            final.error or "") else "generation_failed")
        raise ThreadlogError(final.error or "generation failed", code=code,
                             details={"message_id": p.message_id})
    text = "".join(c.text for c in final.content if isinstance(c, TextPart))
    totals = final.generation or {}
    res = GenerationResult(
        state.thread_id, p.prompt_message_id, p.message_id, p.order, text,
        status=final.status, finish_reason=final.finish_reason,
        steps=int(totals.get("steps", p.model_steps + 1)),
        usage=Usage.model_validate(totals["usage"]) if "usage" in totals
        else add_usage(p.usage, final.usage or Usage()),
        cost=float(totals.get("cost", p.cost + (final.cost or 0.0))), seq=state.version)
    awaiting = [a.tool_call_id for a in state.approvals.values()
                if a.message_id == p.message_id and a.approved is None]
    if awaiting:
        res.status, res.awaiting_approval = "awaiting_approval", awaiting
    elif with_object:
        try:
            res.object = json.loads(text)
        except json.JSONDecodeError:
            res.object = None
    return res
