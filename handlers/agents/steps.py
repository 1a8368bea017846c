"""The persisted steps of a generation: a model step's output, its tools' results, the
final message. Each is saved before the next step starts (the journal of a durable
generation, ``handlers.agents.durable``).

A tool step is two appends:

1. ``<command>-s<step>a``: the assistant message finalized with its tool calls and one
   ``tool_call_requested`` per call (the model's output is never lost to a crash in a
   tool: a resumed generation does not call the model again for it);
2. the tools run (at least once: a crash before 3 runs them again on resume, with the
   same ``ToolContext.message_id`` and ``tool_call_id`` - together the idempotency key
   (command, step, call) a tool with side effects can dedupe on); a call a human denied
   (``tool_approval_decided``, approved false) does not run: its result is an error;
3. ``<command>-s<step>``: the tool message with the results, their
   ``tool_call_completed``/``tool_call_failed`` events and the next pending message
   (unless it exists: an approval continuation saves it with the decision,
   ``handlers.agents.approvals``).

Both are ordered chains of single messages in one round trip
(:meth:`CommandRunner.apply_chain`), not atomic batches: on a single-replica file
stream each atomic batch costs nats-server ~2-3 ms of its own time (it stages the batch
in a file store), which made the step appends of many concurrent generations queue for
0.2-0.5 s. A chain is stored without gaps (each message only right after the previous
one); a crash can cut it short, and the resumed generation finishes it:

- ``s<step>a`` cut short (the model output saved, some ``tool_call_requested`` not):
  the missing events are appended before the tools run;
- ``s<step>`` cut short (the tool message with the results saved, the rest not): the
  recorded results are used - the tools do not run again - and the rest is appended.

Guarantees: every append carries the command id ``<command>-<tag>`` (a re-append is a
no-op, a cut-short chain is finished) and expects the thread's version; a message
finalized elsewhere (an orphan abort) stops the generation (``aborted``) instead of
writing a second final state. The final message, with its embedding, and a step paused
for approvals stay one atomic append each.

Failure modes: store errors propagate (the generation fails, or its process died: the
durable queue resumes it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from events import (
    MessageFinalized,
    MessageSaved,
    ThreadlogError,
    ToolApprovalRequested,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallPart,
    ToolCallRequested,
    ToolResultPart,
    derived_id,
)
from events.catalogue import Event
from handlers.agents.commands import Generate
from handlers.agents.definition import Agent
from handlers.agents.result import GenerationResult, abort_key, finalized_already
from handlers.llm.results import ModelResult, ToolCall
from handlers.runner import CommandRunner
from handlers.threads.decisions import Decision
from handlers.threads.state import ThreadState

PersistHook = Callable[[str, str], Awaitable[None]]
"""Called with the command id and ``before:<tag>`` / ``after:<tag>`` around every append
of a generation, and ``mid:<tag>`` after the first event of a step's chain (with a hook
set, a chain is appended in two parts, so a fault injected there cuts it short)."""


class ToolRunner(Protocol):
    async def __call__(self, tool: Any, call: Any, ctx: dict[str, Any]) -> ToolResultPart: ...


class StepsMixin:
    """Part of :class:`handlers.agents.generation.Generator` (see the module)."""

    runner: CommandRunner
    run_tool: ToolRunner
    aborts: dict[str, asyncio.Event]
    on_persist: PersistHook | None

    async def _tool_step(self, cmd: Generate, agent: Agent, res: GenerationResult,
                         result: ModelResult, step: int, by_name: dict[str, Any],
                         messages: list[dict[str, Any]]) -> int:
        """Save the assistant's tool calls, run the tools, save their results and open
        the next pending message. Returns the next pending message's step_order."""
        tid, mid = cmd.thread_id, res.message_id or ""
        calls = list(result.tool_calls)
        events: list[Event] = [MessageFinalized(
            message_id=mid, thread_id=tid, status="success", content=result.content_parts(),
            usage=result.usage, finish_reason=result.finish_reason, model=result.model,
            provider=result.provider, cost=result.cost)]
        events += [ToolCallRequested(thread_id=tid, message_id=mid, tool_call_id=c.id,
                                     tool_name=c.name, args=c.args) for c in calls]
        needs = [c for c in calls if getattr(by_name.get(c.name), "needs_approval", False)]
        if needs:
            events += [ToolApprovalRequested(thread_id=tid, message_id=mid, tool_call_id=c.id,
                                             tool_name=c.name, args=c.args) for c in needs]
            res.awaiting_approval = [c.id for c in needs]
            res.status = "awaiting_approval"
            _, res.seq = await self._append(cmd, f"s{step}", events, res.persist)
            return step
        await self._append_chain(cmd, f"s{step}a", events, res.persist)
        parts = [c.to_part() for c in calls]
        return await self._run_tools(cmd, agent, res, parts, step, by_name, messages,
                                     result.content_parts())

    async def _run_tools(self, cmd: Generate, agent: Agent, res: GenerationResult,
                         calls: list[ToolCallPart], step: int, by_name: dict[str, Any],
                         messages: list[dict[str, Any]], assistant: list[Any]) -> int:
        """Run the recorded ``calls`` of the step at ``step`` (concurrently), append their
        results and the next pending message, extend ``messages``; the next step."""
        from handlers.llm.messages import ContextMessage, to_chat_messages

        tid, order = cmd.thread_id, res.order or 0
        tool_msg_id = derived_id("tool", cmd.command_id, str(step))
        outputs = await self._recorded_results(cmd, res, calls, step, tool_msg_id)
        state = await self.runner.states.get(tid) if res.persist else None
        if outputs is None:
            ctx = {"agent": agent, "user_id": cmd.user_id, "thread_id": tid,
                   "prompt_message_id": res.prompt_message_id, "message_id": res.message_id}

            async def run(c: ToolCallPart) -> ToolResultPart:
                pa = state.approvals.get(c.tool_call_id) if state is not None else None
                if pa is not None and pa.approved is False:  # denied by a human
                    why = f": {pa.reason}" if pa.reason else ""
                    return ToolResultPart(tool_call_id=c.tool_call_id, tool_name=c.tool_name,
                                          result=f"The user denied this tool call{why}",
                                          is_error=True)
                return await self.run_tool(by_name.get(c.tool_name),
                                           ToolCall(c.tool_call_id, c.tool_name, c.args), ctx)

            outputs = list(await asyncio.gather(*(run(c) for c in calls)))
        events: list[Event] = [MessageSaved(
            message_id=tool_msg_id, thread_id=tid, order=order, step_order=step + 1,
            role="tool", content=list(outputs), agent_name=agent.name)]
        for out in outputs:
            if out.is_error:
                events.append(ToolCallFailed(thread_id=tid, message_id=tool_msg_id,
                                             tool_call_id=out.tool_call_id,
                                             tool_name=out.tool_name, error=str(out.result)))
            else:
                events.append(ToolCallCompleted(thread_id=tid, message_id=tool_msg_id,
                                                tool_call_id=out.tool_call_id,
                                                tool_name=out.tool_name, result=out.result))
        current = state.messages.get(res.message_id or "") if state is not None else None
        if current is not None and current.status == "pending" \
                and current.step_order == step + 2:
            next_id = res.message_id or ""  # an approval continuation's, saved already
        else:
            next_id = derived_id("reply", cmd.command_id, str(step + 2))
            events.append(MessageSaved(
                message_id=next_id, thread_id=tid, order=order, step_order=step + 2,
                role="assistant", content=[], status="pending", agent_name=agent.name,
                model=agent.model, prompt_message_id=res.prompt_message_id))
        res.seq = await self._append_chain(cmd, f"s{step}", events, res.persist)
        messages.extend(to_chat_messages([
            ContextMessage(role="assistant", content=assistant),
            ContextMessage(role="tool", content=list(outputs))]))
        ev = self.aborts.pop(abort_key(tid, res.message_id or ""), None)
        if ev is not None:  # an abort names the pending message: follow it
            self.aborts[abort_key(tid, next_id)] = ev
        res.message_id = next_id
        return step + 2

    async def _recorded_results(self, cmd: Generate, res: GenerationResult,
                                calls: list[ToolCallPart], step: int, tool_msg_id: str
                                ) -> list[ToolResultPart] | None:
        """On resume: finish the step's ``s<step>a`` chain if a crash cut it short, and
        return the tools' results if the ``s<step>`` chain saved them (else None: the
        tools run)."""
        if not res.persist:
            return None
        state = await self.runner.states.get(cmd.thread_id)
        output = state.commands.get(f"{cmd.command_id}-s{step}a", [])
        if output and len(output) < 1 + len(calls):
            await self._append_chain(cmd, f"s{step}a", [output[0], *(
                ToolCallRequested(thread_id=cmd.thread_id, message_id=res.message_id or "",
                                  tool_call_id=c.tool_call_id, tool_name=c.tool_name,
                                  args=c.args) for c in calls)])
        for e in state.commands.get(f"{cmd.command_id}-s{step}", []):
            if isinstance(e, MessageSaved) and e.message_id == tool_msg_id:
                return [c for c in e.content if isinstance(c, ToolResultPart)]
        return None

    async def _append_chain(self, cmd: Generate, tag: str, events: list[Event],
                            persist: bool = True) -> int:
        """Append a step's ``events`` as an ordered chain (see the module); the thread's
        version after it."""
        if not persist:
            return (await self.runner.states.get(cmd.thread_id)).version

        def check(state: ThreadState, rest: Sequence[Event]) -> bool:
            if finalized_already(state, list(rest)):  # aborted from elsewhere (orphaned)
                raise ThreadlogError("generation aborted", code="aborted")
            return True

        command_id = f"{cmd.command_id}-{tag}"
        if self.on_persist is not None:
            await self.on_persist(cmd.command_id, f"before:{tag}")
            if len(events) > 1:  # fault injection: a chain cut short after its first event
                await self.runner.apply_chain(cmd.thread_id, command_id, cmd.user_id,
                                              events[:1], check=check,
                                              correlation_id=cmd.command_id)
                await self.on_persist(cmd.command_id, f"mid:{tag}")
        try:
            seq = await self.runner.apply_chain(cmd.thread_id, command_id, cmd.user_id,
                                                events, check=check,
                                                correlation_id=cmd.command_id)
        except ThreadlogError as exc:
            if exc.code != "conflict":
                raise
            # Another process ran this step (a live owner that missed the liveness
            # signal): its events stand, this run stops.
            raise ThreadlogError("generation aborted: another process saved this step",
                                 code="aborted", details=exc.details) from exc
        if self.on_persist is not None:
            await self.on_persist(cmd.command_id, f"after:{tag}")
        return seq

    async def _append(self, cmd: Generate, tag: str, events: list[Event],
                      persist: bool = True) -> tuple[Any, int]:
        if not persist:
            return None, (await self.runner.states.get(cmd.thread_id)).version

        def decide(state: ThreadState) -> Decision:
            if finalized_already(state, events):  # aborted from elsewhere (orphaned)
                if all(e.status == "failed" for e in events
                       if isinstance(e, MessageFinalized)):
                    return Decision([], {})
                raise ThreadlogError("generation aborted", code="aborted")
            return Decision(events, {})

        if self.on_persist is not None:
            await self.on_persist(cmd.command_id, f"before:{tag}")
        out = await self.runner.apply(cmd.thread_id, f"{cmd.command_id}-{tag}", cmd.user_id,
                                      decide, lambda st: Decision([], {}),
                                      correlation_id=cmd.command_id)
        if self.on_persist is not None:
            await self.on_persist(cmd.command_id, f"after:{tag}")
        return out

    async def _finalize(self, cmd: Generate, res: GenerationResult, content: list[Any],
                        status: str, *, error: str | None = None,
                        finish_reason: str | None = None,
                        result: ModelResult | None = None,
                        extra: list[Event] | None = None) -> int:
        ev = MessageFinalized(
            message_id=res.message_id or "", thread_id=cmd.thread_id, status=status,
            content=content, usage=result.usage if result else None,
            finish_reason=finish_reason, error=error,
            model=result.model if result else None, provider=result.provider if result else None,
            cost=result.cost if result else None,
            generation={"steps": res.steps, "usage": res.usage.model_dump(),
                        "cost": res.cost})
        _, seq = await self._append(cmd, "final", [ev, *(extra or [])], res.persist)
        return seq
