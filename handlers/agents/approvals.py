"""Human in the loop: deciding a tool approval and continuing the paused generation as a
durable run.

A tool marked ``needs_approval`` pauses its generation after the assistant's tool-call
step (``tool_approval_requested`` is recorded, the reply says ``awaiting_approval``).
``cmd.agent.approval`` records the decision. The decision that completes the paused
step starts the step's *continuation*: a generation of its own, ``Generate(command_id=
<approval command id>)``, run by the durable machinery (``handlers.agents.durable``)::

    claim K locally ─▶ enqueue Generate(K) on the generations queue
      ─▶ append K-p atomically: tool_approval_decided + the pending message reply(K, 0)
         at step s+2 (s: the paused step)
      ─▶ run K from its journal (``handlers.agents.progress``): the tools of step s
         (approved ones run, denied ones answer "denied"), saved as tool(K, s) at s+1
         (chain ``K-s<s>``), then model steps from reply(K, 0) on ─▶ reply

Guarantees
- The continuation is in the queue (``Nats-Msg-Id`` = K) before the decision is
  appended: a process killed at any point after the decision is recorded leaves a
  message that a live worker of the agent resumes (``Generator.generate`` on ``K``:
  ``_save_prompt`` replays ``K-p``, ``progress`` says the step's tools are still to run).
  A tool whose result is saved never runs again; the one in flight at a crash runs
  again (idempotency key: ``ToolContext.message_id`` = reply(K, 0) and the tool call
  id). The message is finalized once; usage = the model calls made.
- Exactly one continuation per paused step: decisions are appended under the thread's
  lock with the expected version, and only the decision that leaves no call of the step
  undecided carries the pending message. A queued continuation whose decision was
  never appended (the process died before it, or it was refused) finds no ``K-p``: the
  worker's ``generate`` answers ``not_found`` and drops it.
- Re-sending the approval command (same command id) at any later time answers the
  continuation's recorded result (or waits for / resumes the run in flight) without
  calling the model again, while the thread remembers ``K-p``.

Failure modes: ``not_found`` (no approval pending for the call, or the thread is not the
caller's), ``invalid_transition`` (already decided), errors of the continuation (as a
generation's, its message finalized ``failed``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from events import (
    InvalidTransition,
    MessageSaved,
    NotFound,
    ToolApprovalDecided,
    derived_id,
)
from handlers.agents.commands import DecideApproval, Generate
from handlers.agents.definition import Agent
from handlers.agents.durable import NotStarted
from handlers.agents.generation import GenerationResult, Generator, ThreadOptions
from handlers.agents.progress import progress
from handlers.agents.tool_refs import tool_headers
from handlers.llm.tools import resolve_tools
from handlers.threads.decisions import Decision, require_owned
from handlers.threads.state import ThreadState


class _Last(Exception):
    """The decision completes its step (it must carry the continuation)."""


class _NotLast(Exception):
    """The decision leaves calls of its step undecided (no continuation yet)."""


def continuation_id(cmd: DecideApproval) -> str:
    """The command id of the generation that continues the step this decision completes."""
    return cmd.command_id


def _paused_generation(state: ThreadState, message_id: str) -> tuple[str | None, str | None]:
    """The agent and the prompt of the paused message (from its ``message_saved``)."""
    for evs in reversed(state.commands.values()):
        for e in evs:
            if isinstance(e, MessageSaved) and e.message_id == message_id:
                return e.agent_name, e.prompt_message_id
    msg = state.recent.get(message_id)
    prompt = next((m.message_id for m in state.recent.values() if msg is not None
                   and m.order == msg.order and m.role == "user"), None)
    return None, prompt


def _decide(cmd: DecideApproval, gen: Generator, last: bool) -> Callable[[ThreadState],
                                                                         Decision]:
    """The decision; with ``last`` it must complete its step and carries the pending
    message of the continuation (else ``_NotLast``); without, it must not (``_Last``)."""
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
        others = [a for a in state.approvals.values()
                  if a.message_id == pa.message_id and a.tool_call_id != cmd.tool_call_id
                  and a.approved is None]
        if last and others:
            raise _NotLast()
        if not last and not others:
            raise _Last()
        result: dict[str, Any] = {"tool_call_id": cmd.tool_call_id, "approved": cmd.approved}
        events: list[Any] = [ToolApprovalDecided(
            thread_id=state.thread_id, tool_call_id=cmd.tool_call_id, approved=cmd.approved,
            decided_by=cmd.user_id, reason=cmd.reason)]
        if last:
            info = state.messages[pa.message_id]
            agent_name, prompt_id = _paused_generation(state, pa.message_id)
            agent = gen.agents.get(agent_name or "")  # unknown_agent: nothing appended
            pending = derived_id("reply", continuation_id(cmd), "0")
            events.append(MessageSaved(
                message_id=pending, thread_id=state.thread_id, order=info.order,
                step_order=info.step_order + 2, role="assistant", content=[],
                status="pending", agent_name=agent.name, model=agent.model,
                prompt_message_id=prompt_id))
            result["agent"] = agent.name
        else:
            result["waiting_for"] = [a.tool_call_id for a in others]
        return Decision(events, result)

    return decide


def _replay(state: ThreadState) -> Decision:
    return Decision([], {})


async def decide_approval(gen: Generator, cmd: DecideApproval) -> dict[str, Any]:
    """Record the decision; the one completing its step starts the continuation (see the
    module) and answers its result (``generation``)."""
    # caught up first: another process may have paused (or continued) the generation
    state = await gen.runner.states.refresh(cmd.thread_id)
    require_owned(state, cmd.user_id)  # before anything is queued or told about the thread
    k = continuation_id(cmd)
    if k + "-p" in state.commands:  # re-sent: the continuation's result
        return await _answer(gen, cmd, state, None)
    if cmd.command_id + "-d" not in state.commands:
        pa = state.approvals.get(cmd.tool_call_id)
        if pa is not None and pa.approved is None and not any(
                a.approved is None for a in state.approvals.values()
                if a.message_id == pa.message_id and a.tool_call_id != cmd.tool_call_id):
            with contextlib.suppress(_NotLast):  # a stale state: decided as not the last
                return await _answer(gen, cmd, state, _decide(cmd, gen, True))
    try:
        _, seq = await gen.runner.apply(cmd.thread_id, cmd.command_id + "-d", cmd.user_id,
                                        _decide(cmd, gen, False), _replay)
    except _Last:
        return await _answer(gen, cmd, await gen.runner.states.refresh(cmd.thread_id),
                             _decide(cmd, gen, True))
    state = await gen.runner.states.get(cmd.thread_id)
    pa = state.approvals.get(cmd.tool_call_id)
    out = {"tool_call_id": cmd.tool_call_id, "approved": cmd.approved, "seq": seq}
    if pa is not None:
        out["waiting_for"] = [a.tool_call_id for a in state.approvals.values()
                              if a.message_id == pa.message_id and a.approved is None]
    return out


async def _answer(gen: Generator, cmd: DecideApproval, state: ThreadState,
                  decide: Callable[[ThreadState], Decision] | None) -> dict[str, Any]:
    res = await _continue(gen, cmd, state, decide)
    assert isinstance(res, GenerationResult)
    return {"tool_call_id": cmd.tool_call_id, "approved": cmd.approved,
            "generation": res.to_dict(), "seq": res.seq}


async def _continue(gen: Generator, cmd: DecideApproval, state: ThreadState,
                    decide: Callable[[ThreadState], Decision] | None
                    ) -> GenerationResult | Any:
    """Run the continuation ``K`` as ``Generator.generate`` runs a generation (claim,
    enqueue, run, release), appending the decision (``decide``: the first time) after
    the queue message is written; a re-send (``decide`` None) waits for a live run
    elsewhere, else resumes it."""
    k = continuation_id(cmd)
    if decide is None:
        agent_name = next((e.agent_name for e in state.commands.get(k + "-p", [])
                           if isinstance(e, MessageSaved)), None)
    else:
        pa = state.approvals[cmd.tool_call_id]
        agent_name, _ = _paused_generation(state, pa.message_id)
    agent = gen.agents.get(agent_name or "")
    # prompt_message_id: the continuation's own pending message, saved with the
    # decision. A worker resuming a queued continuation whose decision never reached
    # the log finds no such message: its generate answers not_found, appends nothing
    # and the queue message is dropped.
    gcmd = Generate(command_id=k, user_id=cmd.user_id, agent=agent.name,
                    thread_id=cmd.thread_id, prompt_message_id=derived_id("reply", k, "0"))
    topts = gen.thread_options.get(cmd.thread_id, ThreadOptions())
    tools = list(resolve_tools(agent.tools, topts.tools, None).values())
    handler = topts.usage_handler or agent.usage_handler

    async def record() -> None:
        assert decide is not None
        if gen.on_persist is not None:
            await gen.on_persist(k, "before:decision")
        await gen.runner.apply(cmd.thread_id, k + "-p", cmd.user_id, decide, _replay,
                               correlation_id=k)
        if gen.on_persist is not None:
            await gen.on_persist(k, "after:decision")

    q = gen.queue
    if q is None:
        if decide is not None:
            await record()
        return await _run(gen, gcmd, agent, tools, handler, None)
    while True:
        if k in q.local:  # a duplicate in this process: wait for it
            await asyncio.shield(q.local[k])
            decide = None if k + "-p" in (await gen.runner.states.get(
                cmd.thread_id)).commands else decide
            continue
        if decide is None:
            p = progress(await gen.runner.states.get(cmd.thread_id), k)
            if p is not None and not p.finished and await q.running_elsewhere(k):
                await q.wait_elsewhere(k, q.config.ack_wait)
                await gen.runner.states.refresh(cmd.thread_id)
                continue
        fut = q.claim(gcmd)
        if fut is None:
            continue
        finished = True
        try:
            ack = None
            if decide is not None:
                ack = await q.enqueue(gcmd, continuation=True,  # before the decision
                                      headers=tool_headers(agent.tools, tools))
                try:
                    await record()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await ack
                    raise
            return await _run(gen, gcmd, agent, tools, handler, ack)
        except NotStarted:
            finished = False  # nothing ran: the queued continuation goes to another worker
            raise
        finally:
            q.release(gcmd, fut, finished=finished)


async def _run(gen: Generator, gcmd: Generate, agent: Agent, tools: list[Any],
               handler: Any, ack: Awaitable[Any] | None) -> GenerationResult | Any:
    return await gen._generate_saved(gcmd, agent, tools, handler, None, None, None, ack)
