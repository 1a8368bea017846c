"""Human in the loop: deciding a tool approval and resuming the paused generation.

A tool marked ``needs_approval`` pauses its generation after the assistant's tool-call
step (``tool_approval_requested`` is recorded, the reply says ``awaiting_approval``).
``cmd.agent.approval`` records the decision; once every approval of that step is decided,
the approved tools run, denied ones return an error result to the model ("denied"), and
the generation continues from the thread's state with the same agent.
"""

from __future__ import annotations

import asyncio
from typing import Any

from events import (
    InvalidTransition,
    MessageSaved,
    NotFound,
    ToolApprovalDecided,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallPart,
    ToolResultPart,
    derived_id,
)
from events.catalogue import Event
from handlers.agents.commands import DecideApproval, Generate
from handlers.agents.context import build_context
from handlers.agents.generation import GenerationResult, Generator
from handlers.llm.results import ToolCall
from handlers.threads.decisions import Decision, require_owned
from handlers.threads.state import ThreadState


def _decide(cmd: DecideApproval) -> Any:
    def decide(state: ThreadState) -> Decision:
        require_owned(state, cmd.user_id)
        pa = state.approvals.get(cmd.tool_call_id)
        if pa is None:
            raise NotFound(f"no approval pending for tool call {cmd.tool_call_id!r}",
                           details={"tool_call_id": cmd.tool_call_id})
        if pa.approved is not None:
            raise InvalidTransition(f"tool call {cmd.tool_call_id!r} was already decided",
                                    details={"tool_call_id": cmd.tool_call_id,
                                             "approved": pa.approved})
        return Decision([ToolApprovalDecided(thread_id=state.thread_id,
                                             tool_call_id=cmd.tool_call_id,
                                             approved=cmd.approved, decided_by=cmd.user_id,
                                             reason=cmd.reason)],
                        {"tool_call_id": cmd.tool_call_id, "approved": cmd.approved})

    return decide


async def decide_approval(gen: Generator, cmd: DecideApproval) -> dict[str, Any]:
    """Record the decision; resume the generation when its step is fully decided."""
    _, seq = await gen.runner.apply(cmd.thread_id, cmd.command_id + "-d", cmd.user_id,
                                    _decide(cmd), lambda st: Decision([], {}))
    state = await gen.runner.states.get(cmd.thread_id)
    pa = state.approvals.get(cmd.tool_call_id)
    if pa is None:  # already resumed by a re-sent command
        return {"tool_call_id": cmd.tool_call_id, "approved": cmd.approved, "seq": seq}
    step_calls = [a for a in state.approvals.values() if a.message_id == pa.message_id]
    waiting = [a.tool_call_id for a in step_calls if a.approved is None]
    if waiting:
        return {"tool_call_id": cmd.tool_call_id, "approved": cmd.approved,
                "waiting_for": waiting, "seq": seq}
    res = await _resume(gen, cmd, state, pa.message_id)
    return {"tool_call_id": cmd.tool_call_id, "approved": cmd.approved,
            "generation": res.to_dict(), "seq": res.seq}


async def _resume(gen: Generator, cmd: DecideApproval, state: ThreadState,
                  message_id: str) -> GenerationResult:
    msg = state.recent[message_id]
    saved = state.messages[message_id]
    agent_name = next((e.agent_name for evs in state.commands.values() for e in evs
                       if isinstance(e, MessageSaved) and e.message_id == message_id), None)
    agent = gen.agents.get(agent_name or "")
    prompt_id = next((m.message_id for m in state.recent.values()
                      if m.order == saved.order and m.role == "user"), None)
    calls = [p for p in msg.content if isinstance(p, ToolCallPart)]
    tools = {t.name: t for t in agent.tools}
    ctx = {"agent": agent, "user_id": cmd.user_id, "thread_id": cmd.thread_id,
           "prompt_message_id": prompt_id, "message_id": message_id}

    async def run(call: ToolCallPart) -> ToolResultPart:
        decision = state.approvals.get(call.tool_call_id)
        if decision is not None and decision.approved is False:
            why = f": {decision.reason}" if decision.reason else ""
            return ToolResultPart(tool_call_id=call.tool_call_id, tool_name=call.tool_name,
                                  result=f"The user denied this tool call{why}",
                                  is_error=True)
        return await gen.run_tool(tools.get(call.tool_name),
                                  ToolCall(call.tool_call_id, call.tool_name, call.args), ctx)

    outputs = list(await asyncio.gather(*(run(c) for c in calls)))
    gcmd = Generate(command_id=cmd.command_id, user_id=cmd.user_id, agent=agent.name,
                    thread_id=cmd.thread_id, prompt_message_id=prompt_id or message_id)
    step = saved.step_order
    tool_msg_id = derived_id("tool", cmd.command_id, str(step))
    next_id = derived_id("reply", cmd.command_id, str(step + 2))
    events: list[Event] = [MessageSaved(
        message_id=tool_msg_id, thread_id=cmd.thread_id, order=saved.order,
        step_order=step + 1, role="tool", content=list(outputs), agent_name=agent.name)]
    for out in outputs:
        cls = ToolCallFailed if out.is_error else ToolCallCompleted
        extra = {"error": str(out.result)} if out.is_error else {"result": out.result}
        events.append(cls(thread_id=cmd.thread_id, message_id=tool_msg_id,
                          tool_call_id=out.tool_call_id, tool_name=out.tool_name, **extra))
    events.append(MessageSaved(
        message_id=next_id, thread_id=cmd.thread_id, order=saved.order, step_order=step + 2,
        role="assistant", content=[], status="pending", agent_name=agent.name,
        model=agent.model, prompt_message_id=prompt_id))
    _, seq = await gen._append(gcmd, f"r{step}", events)
    state = await gen.runner.states.get(cmd.thread_id)
    topts = gen.thread_options.get(cmd.thread_id)
    handler = (topts.usage_handler if topts else None) or agent.usage_handler
    res = GenerationResult(cmd.thread_id, prompt_id, next_id, saved.order, "", seq=seq,
                           usage_handler=handler)
    messages = build_context(state, agent, saved.order, step + 2)
    return await gen.run_loop(gcmd, agent, res, messages, step + 2)
