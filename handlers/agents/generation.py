"""Running an agent in a thread: prompt, context, model steps, tools, usage, deltas.

Guarantees
- The prompt (unless given by id) and a ``pending`` assistant message are saved before
  the model is called, in two single appends (the second expects the version the first
  left; a re-sent command after a crash between them appends only the pending message,
  never a second prompt); each step is saved when it ends (same ``order``, increasing
  ``step_order``); the final step finalizes the pending message.
- Any failure or abort after the pending message exists finalizes it as ``failed`` with
  the error: no message is left pending by a generation that has ended.
- Every model call appends one ``usage_recorded`` event on ``usage.<user_id>`` whose id
  derives from the call id: retries and re-appends never double count.
- The context is read from the thread state right after the prompt appends (which the
  store checked against the thread's latest version), so it includes every event
  appended before the command; it is bounded by the context options, not the thread.
- With the agent's ``embedding_model``, the prompt is embedded once, before its append,
  and its ``message_embedded`` event goes in the prompt's (atomic) append (a re-sent command
  whose prompt is saved does not embed it again unless it must search); the final text's
  goes in the final step's append. The call ids derive from the command id, so usage is
  recorded once per call. An embedding failure is logged and leaves the message without
  a vector (vector search then finds nothing for it); it never fails the generation.
- Context search (text, vector, fused) asks the projector with ``min_seq`` = the thread's
  version after the prompt append: it sees the prompt's embedding and every earlier turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from events import (
    Aggregate,
    EventStore,
    MessageEmbedded,
    MessageFinalized,
    MessageSaved,
    TextPart,
    ThreadlogError,
    ToolApprovalRequested,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ToolResultPart,
    Usage,
    UsageRecorded,
    ValidationFailed,
    derived_id,
)
from events.catalogue import Event
from events.envelope import EventEnvelope
from events.thread_events import MAX_EMBEDDING_DIMENSIONS
from handlers.agents.commands import Generate
from handlers.agents.context import build_context
from handlers.agents.definition import Agent, AgentRegistry, UsageHandler
from handlers.llm.results import ModelResult
from handlers.llm.tools import resolve_tools
from handlers.runner import CommandRunner
from handlers.streaming import DeltaWriter
from handlers.threads.decisions import Decision, require_owned
from handlers.threads.state import ThreadState

log = logging.getLogger(__name__)
DeltaSink = Callable[[str], Awaitable[None]]
CANVAS_TOOL_NAMES = frozenset({"read_canvas", "edit_canvas", "revert_canvas_edit"})
BudgetCheck = Callable[[str, str, list[dict[str, Any]], int | None], Awaitable[Any]]


class StepCaller(Protocol):
    """One model step (with retries/fallbacks inside), streaming text to ``on_text``."""

    async def __call__(self, agent: Agent, messages: list[dict[str, Any]],
                       tools: list[Any], *, on_text: DeltaSink | None,
                       abort: asyncio.Event | None,
                       output_schema: dict[str, Any] | None) -> ModelResult: ...


class ToolRunner(Protocol):
    async def __call__(self, tool: Any, call: Any, ctx: dict[str, Any]) -> ToolResultPart: ...


@dataclass
class GenerationResult:
    thread_id: str
    prompt_message_id: str | None
    message_id: str | None
    order: int | None
    text: str
    object: Any = None
    status: str = "success"
    finish_reason: str | None = None
    steps: int = 0
    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    seq: int = 0
    awaiting_approval: list[str] = field(default_factory=list)
    persist: bool = field(default=True, repr=False)
    usage_handler: UsageHandler | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"thread_id": self.thread_id, "prompt_message_id": self.prompt_message_id,
                "message_id": self.message_id, "order": self.order, "text": self.text,
                "object": self.object, "status": self.status,
                "finish_reason": self.finish_reason, "steps": self.steps,
                "usage": self.usage.model_dump(), "cost": self.cost,
                "awaiting_approval": self.awaiting_approval}


@dataclass
class ThreadOptions:
    """Thread-level overrides (in-process): tools and usage handler for one thread."""

    tools: list[Any] | None = None
    usage_handler: UsageHandler | None = None


def add_usage(a: Usage, b: Usage) -> Usage:
    return Usage(**{k: getattr(a, k) + getattr(b, k) for k in Usage.model_fields})


class Generator:
    def __init__(self, runner: CommandRunner, store: EventStore, agents: AgentRegistry,
                 call_step: StepCaller, run_tool: ToolRunner,
                 delta_writer: Callable[[str, str, str, str], DeltaWriter] | None) -> None:
        self.runner = runner
        self.store = store
        self.agents = agents
        self.call_step = call_step
        self.run_tool = run_tool
        self.delta_writer = delta_writer
        self.aborts: dict[str, asyncio.Event] = {}
        self.thread_options: dict[str, ThreadOptions] = {}
        self.canvas: Any = None
        """The CanvasService, for reference snippets of canvas edits in the context."""
        self.check_budget: BudgetCheck | None = None
        """Called before anything is appended or the model called; raises to refuse."""
        self.append_usage: Callable[[str, EventEnvelope], Awaitable[Any]] | None = None
        """Appends a usage event of a user (the budget's ledger, which folds it)."""
        self._pending: set[asyncio.Future[None]] = set()

    # -- the prompt -------------------------------------------------------------------
    # Two single appends, not one atomic batch (a batch makes the server fsync): the
    # prompt (command id ``<id>-u``), then the pending message (``<id>-p``) at the version
    # the first one left. A crash between them leaves the prompt without its pending
    # message; the re-sent command replays the prompt (``-u`` is among the thread's
    # commands) and appends only the pending message. A command saved before this split
    # has prompt and pending under ``-p``: ``generate`` skips the prompt step for it.
    def _decide_prompt(self, cmd: Generate, agent: Agent, prompt_vector: list[float] | None
                       ) -> Callable[[ThreadState], Decision]:
        def decide(state: ThreadState) -> Decision:
            require_owned(state, cmd.user_id)
            prompt_id = derived_id("prompt", cmd.command_id)
            order = state.last_order + 1
            events: list[Event] = [MessageSaved(
                message_id=prompt_id, thread_id=state.thread_id, order=order,
                role="user", content=[TextPart(text=cmd.prompt or "")])]
            events += _embedded(agent, prompt_id, state.thread_id, prompt_vector)
            return Decision(events, {"prompt_message_id": prompt_id, "order": order})

        return decide

    @staticmethod
    def _replay_prompt(cmd: Generate) -> Callable[[ThreadState], Decision]:
        def replay(state: ThreadState) -> Decision:
            prompt = next(e for e in state.commands[cmd.command_id + "-u"]
                          if isinstance(e, MessageSaved))
            return Decision([], {"prompt_message_id": prompt.message_id,
                                 "order": prompt.order})

        return replay

    def _decide_pending(self, cmd: Generate, agent: Agent, prompt: dict[str, Any] | None
                        ) -> Callable[[ThreadState], Decision]:
        """The pending assistant message after the prompt (``prompt``: the prompt step's
        result; ``None`` when the prompt is given by id)."""
        def decide(state: ThreadState) -> Decision:
            require_owned(state, cmd.user_id)
            if prompt is not None:
                prompt_id, order = prompt["prompt_message_id"], prompt["order"]
            else:
                prompt_id = cmd.prompt_message_id or ""
                info = state.messages.get(prompt_id)
                if info is None:
                    raise ThreadlogError(f"prompt message {prompt_id!r} not found",
                                         code="not_found", details={"message_id": prompt_id})
                order = info.order
            step = state.max_step.get(order, 0) + 1
            pending_id = derived_id("reply", cmd.command_id, "0")
            return Decision([MessageSaved(
                message_id=pending_id, thread_id=state.thread_id, order=order,
                step_order=step, role="assistant", content=[], status="pending",
                agent_name=agent.name, model=agent.model, prompt_message_id=prompt_id)],
                {"prompt_message_id": prompt_id, "message_id": pending_id, "order": order,
                 "step_order": step})

        return decide

    @staticmethod
    def _replay_pending(cmd: Generate) -> Callable[[ThreadState], Decision]:
        def replay(state: ThreadState) -> Decision:
            evs = [e for e in state.commands.get(cmd.command_id + "-p", [])
                   if isinstance(e, MessageSaved)]
            pending = evs[-1]
            return Decision([], {"prompt_message_id": pending.prompt_message_id,
                                 "message_id": pending.message_id, "order": pending.order,
                                 "step_order": pending.step_order})

        return replay

    async def _save_prompt(self, cmd: Generate, agent: Agent, handler: UsageHandler | None
                           ) -> tuple[Decision, int, bool, list[float] | None]:
        """Append the prompt (unless given by id) and the pending message; each step is
        skipped (replayed) when the thread already holds it. Returns the pending step's
        decision, the thread's version after it, whether the prompt was saved before this
        call (a re-sent command) and the prompt's embedding if it was computed."""
        commands = (await self.runner.states.get(cmd.thread_id)).commands
        done = cmd.command_id + "-p" in commands
        saved = done or cmd.command_id + "-u" in commands
        prompt: dict[str, Any] | None = None
        vector = None
        if cmd.prompt_message_id is None and not done:
            vector = None if saved else await self._embed_prompt(cmd, agent, handler)
            if not saved:  # both in one round trip when nothing comes in between
                _, decision, seq = await self.runner.apply_two(
                    cmd.thread_id, cmd.user_id,
                    (cmd.command_id + "-u", self._decide_prompt(cmd, agent, vector),
                     self._replay_prompt(cmd)),
                    (cmd.command_id + "-p",
                     lambda st, d: self._decide_pending(cmd, agent, d.result)(st),
                     self._replay_pending(cmd)),
                    correlation_id=cmd.command_id)
                return decision, seq, saved, vector
            decision, _ = await self.runner.apply(
                cmd.thread_id, cmd.command_id + "-u", cmd.user_id,
                self._decide_prompt(cmd, agent, vector), self._replay_prompt(cmd),
                correlation_id=cmd.command_id)
            prompt = decision.result
        decision, seq = await self.runner.apply(
            cmd.thread_id, cmd.command_id + "-p", cmd.user_id,
            self._decide_pending(cmd, agent, prompt), self._replay_pending(cmd),
            correlation_id=cmd.command_id)
        return decision, seq, saved, vector

    # -- the run ----------------------------------------------------------------------
    async def generate(self, cmd: Generate, *, on_text: DeltaSink | None = None,
                       tools: list[Any] | None = None,
                       usage_handler: UsageHandler | None = None,
                       validate_object: Callable[[Any], Any] | None = None,
                       already_done: Awaitable[Any] | None = None
                       ) -> GenerationResult | Any:
        """Run the agent; raise a :class:`ThreadlogError` after marking the message failed.

        Tools and the usage handler resolve call > thread > agent (most specific wins).
        ``already_done`` (the command log's lookup, started by the caller) is awaited after
        the prompt append, which is idempotent: if it yields a stored reply, that reply is
        returned and the model is not called again. With ``storage="none"`` nothing is
        saved to the thread (usage is still recorded)."""
        agent = self.agents.get(cmd.agent)
        if self.check_budget is not None:
            await self.check_budget(cmd.user_id, agent.model,
                                    [{"role": "user", "content": cmd.prompt or ""}],
                                    agent.call_settings.max_tokens)
        topts = self.thread_options.get(cmd.thread_id, ThreadOptions())
        tool_list = list(resolve_tools(agent.tools, topts.tools, tools).values())
        handler = usage_handler or topts.usage_handler or agent.usage_handler
        if agent.storage == "none":
            return await self._generate_unsaved(cmd, agent, tool_list, handler, on_text,
                                                validate_object)
        decision, seq, saved, prompt_vector = await self._save_prompt(cmd, agent, handler)
        if already_done is not None:
            stored = await already_done
            if stored is not None:
                return stored
        r = decision.result
        res = GenerationResult(cmd.thread_id, r["prompt_message_id"], r["message_id"],
                               r["order"], "", seq=seq, usage_handler=handler)
        if saved and agent.context_options.vector_search and \
                agent.context_options.search_messages > 0:  # re-sent, unfinished before
            prompt_vector = await self._embed_prompt(cmd, agent, handler)
        state = await self.runner.states.get(cmd.thread_id)
        found = await self._search(cmd, agent, state.version, r["order"], prompt_vector)
        messages = build_context(state, agent, r["order"], r["step_order"], found)
        messages = await self._with_canvas_context(cmd, agent, tool_list, messages, handler,
                                                   prompt_vector)
        return await self.run_loop(cmd, agent, res, messages, r["step_order"], on_text=on_text,
                                   tools=tool_list, validate_object=validate_object)

    async def _search(self, cmd: Generate, agent: Agent, version: int, order: int,
                      prompt_vector: list[float] | None = None) -> list[dict[str, Any]]:
        """Earlier messages matching the prompt (``ContextOptions.search_messages``): by
        text, and by the prompt's embedding (``vector_search``), fused by the projector
        with reciprocal rank fusion. ``min_seq=version``: the search sees every event
        appended up to the prompt (read your writes)."""
        opts = agent.context_options
        if opts.search_messages <= 0 or not cmd.prompt:
            return []
        vector = prompt_vector if opts.vector_search else None
        if not opts.text_search and vector is None:
            return []
        from handlers.client import Client

        before, after = opts.message_range
        body: dict[str, Any] = {
            "limit": opts.search_messages, "before": before, "after": after,
            "thread_id": cmd.thread_id, "max_order": order,
            "all_threads": opts.search_other_threads, "exclude_tool_messages": True}
        if opts.text_search:
            body["text"] = cmd.prompt[:2_000]
        if vector is not None:
            body |= {"vector": vector, "model": agent.embedding_model,
                     "vector_score_threshold": opts.vector_score_threshold}
        try:
            res = await Client(self.store.nc, user_id=cmd.user_id).query(
                "query.{user_id}.messages.search", min_seq=version, **body)
        except ThreadlogError as exc:
            log.warning("context search skipped: %s", exc.message)
            return []
        items: list[dict[str, Any]] = res.value["items"]
        return items

    # -- embeddings ---------------------------------------------------------------------
    async def _embed_prompt(self, cmd: Generate, agent: Agent, handler: UsageHandler | None
                            ) -> list[float] | None:
        """The prompt's embedding, saved with the prompt and used as the query vector
        (and by the canvas context): one call. A re-sent command whose prompt is already
        saved does not embed before the append; it embeds again (same call id: usage
        recorded once) only if its generation had not finished and needs the vector."""
        if not agent.embedding_model or not cmd.prompt:
            return None
        return await self._embed(cmd, agent, "prompt", cmd.prompt, handler)

    async def _embed(self, cmd: Generate, agent: Agent, tag: str, text: str,
                     handler: UsageHandler | None) -> list[float] | None:
        """One embedding call (usage recorded, call id derived from the command: a retry
        records it once). A failure is logged and gives ``None``: the message is saved
        without a vector and the search is text only; the generation goes on."""
        from handlers.llm.embeddings import embed_texts

        if not agent.embedding_model or not text.strip():
            return None
        try:
            result = await embed_texts(agent.embedding_model, [text],
                                       call_id=derived_id("embed", cmd.command_id, tag))
        except Exception as exc:
            log.warning("embedding with %s failed, message not embedded: %s",
                        agent.embedding_model, exc)
            return None
        await self._record_embedding(cmd, agent, result, handler)
        vector = [float(v) for v in result.vectors[0]] if result.vectors else []
        if not 0 < len(vector) <= MAX_EMBEDDING_DIMENSIONS or not any(vector) \
                or not all(map(math.isfinite, vector)):
            log.warning("embedding with %s gave no usable vector (%d values), message not "
                        "embedded", agent.embedding_model, len(vector))
            return None
        return vector

    async def _record_embedding(self, cmd: Generate, agent: Agent, result: Any,
                                handler: UsageHandler | None) -> None:
        await self._record_usage_event(cmd, agent, UsageRecorded(
            call_id=result.call_id, user_id=cmd.user_id, thread_id=cmd.thread_id,
            agent_name=agent.name, model=result.model, provider=result.provider,
            usage=result.usage, cost=result.cost, kind="embedding"), handler)

    async def _with_canvas_context(self, cmd: Generate, agent: Agent, tools: list[Any],
                                   messages: list[dict[str, Any]],
                                   handler: UsageHandler | None = None,
                                   prompt_vector: list[float] | None = None
                                   ) -> list[dict[str, Any]]:
        """Insert reference snippets of the thread's canvas edits after the instructions."""
        wanted = (agent.context_options.canvas is not None or bool(cmd.canvas_selection)
                  or any(getattr(t, "name", "") in CANVAS_TOOL_NAMES for t in tools))
        if self.canvas is None or not wanted:
            return messages
        from handlers.canvas.context import canvas_context_messages

        async def record_embedding(result: Any) -> None:
            await self._record_embedding(cmd, agent, result, handler)

        extra = await canvas_context_messages(
            self.canvas, cmd.thread_id, cmd.user_id, cmd.prompt or "", cmd.canvas_selection,
            agent.context_options.canvas, embedding_model=agent.embedding_model,
            on_embedding=record_embedding, prompt_vector=prompt_vector)
        if not extra:
            return messages
        head = 1 if messages and messages[0].get("role") == "system" else 0
        return [*messages[:head], *extra, *messages[head:]]

    async def _generate_unsaved(self, cmd: Generate, agent: Agent, tools: list[Any],
                                handler: UsageHandler | None, on_text: DeltaSink | None,
                                validate_object: Callable[[Any], Any] | None
                                ) -> GenerationResult:
        """``storage="none"``: the thread is context only; no message is appended."""
        state = await self.runner.states.get(cmd.thread_id)
        require_owned(state, cmd.user_id)
        order = state.last_order + 1
        messages = build_context(state, agent, order, 0)
        if cmd.prompt is not None:
            messages.append({"role": "user", "content": cmd.prompt})
        res = GenerationResult(cmd.thread_id, cmd.prompt_message_id,
                               derived_id("reply", cmd.command_id, "0"), None, "",
                               seq=state.version, persist=False, usage_handler=handler)
        return await self.run_loop(cmd, agent, res, messages, 1, on_text=on_text, tools=tools,
                                   validate_object=validate_object)

    async def run_loop(self, cmd: Generate, agent: Agent, res: GenerationResult,
                       messages: list[dict[str, Any]], step: int, *,
                       on_text: DeltaSink | None = None, tools: list[Any] | None = None,
                       validate_object: Callable[[Any], Any] | None = None
                       ) -> GenerationResult:
        """Model steps from the pending message ``res.message_id`` at ``step`` on."""
        writer = (self.delta_writer(cmd.user_id, cmd.thread_id, res.message_id or "",
                                    cmd.command_id)
                  if cmd.stream and self.delta_writer else None)
        abort = self.aborts.setdefault(res.message_id or "", asyncio.Event())
        try:
            await self._loop(cmd, agent, res, messages, step,
                             agent.tools if tools is None else tools,
                             on_text, writer, abort, validate_object)
        except BaseException as exc:
            err = exc if isinstance(exc, ThreadlogError) else ThreadlogError(
                f"generation failed: {type(exc).__name__}: {exc}", code="generation_failed")
            if isinstance(exc, asyncio.CancelledError):
                err = ThreadlogError("generation aborted", code="aborted")
            res.status = "failed"
            for fut in list(self._pending):
                with contextlib.suppress(Exception):
                    await fut
            await self._finalize(cmd, res, [], "failed", error=err.message,
                                 finish_reason=res.finish_reason or "error")
            if writer is not None:
                await writer.close("failed")
            raise err from exc
        finally:
            self.aborts.pop(res.message_id or "", None)
        if writer is not None:
            await writer.close(res.status)
        return res

    async def _loop(self, cmd: Generate, agent: Agent, res: GenerationResult,
                    messages: list[dict[str, Any]], step: int, tools: list[Any],
                    on_text: DeltaSink | None, writer: DeltaWriter | None,
                    abort: asyncio.Event, validate_object: Callable[[Any], Any] | None
                    ) -> None:
        by_name = {t.name: t for t in tools}
        max_steps = cmd.max_steps or agent.max_steps
        repaired = False

        async def sink(text: str) -> None:
            if writer is not None:
                await writer.write(text)
            if on_text is not None:
                await on_text(text)

        for n in range(max_steps):
            offered = tools if n < max_steps - 1 else []
            result = await self.call_step(
                agent, messages, offered, on_text=sink if (writer or on_text) else None,
                abort=abort, output_schema=cmd.output_schema)
            res.steps += 1
            usage_recorded = asyncio.ensure_future(
                self._record_usage(cmd, agent, result, res.usage_handler))
            self._pending.add(usage_recorded)
            usage_recorded.add_done_callback(self._pending.discard)
            res.usage = add_usage(res.usage, result.usage)
            res.cost += result.cost
            res.finish_reason = result.finish_reason
            if result.aborted:
                raise ThreadlogError("generation aborted", code="aborted")
            if not result.tool_calls:
                res.text = result.text
                if cmd.output_schema is not None:
                    try:
                        res.object = self._parse_object(result.text, validate_object)
                    except ValidationFailed as exc:
                        if repaired:
                            raise
                        repaired = True
                        messages = [*messages, {"role": "assistant", "content": result.text},
                                    {"role": "user", "content":
                                     f"That output was invalid: {exc.message}. Reply with "
                                     "only a JSON object matching the schema."}]
                        continue
                vector = (await self._embed(cmd, agent, res.message_id or "", result.text,
                                            res.usage_handler) if res.persist else None)
                res.seq = await self._finalize(
                    cmd, res, result.content_parts(), "success",
                    finish_reason=result.finish_reason, result=result,
                    extra=_embedded(agent, res.message_id or "", cmd.thread_id, vector))
                await usage_recorded
                return
            step = await self._tool_step(cmd, agent, res, result, step, by_name, messages)
            await usage_recorded
            if res.awaiting_approval:
                return
        raise ThreadlogError(f"no final answer within {max_steps} steps",
                             code="max_steps_reached", details={"max_steps": max_steps})

    @staticmethod
    def _parse_object(text: str, validate: Callable[[Any], Any] | None) -> Any:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationFailed(f"output is not JSON: {exc.msg}",
                                   details={"output": text[:500]}) from None
        if validate is None:
            return value
        try:
            return validate(value)
        except ValidationFailed:
            raise
        except Exception as exc:  # pydantic.ValidationError and friends
            raise ValidationFailed(f"output does not match the schema: {exc}",
                                   details={"output": text[:500]}) from None

    async def _tool_step(self, cmd: Generate, agent: Agent, res: GenerationResult,
                         result: ModelResult, step: int, by_name: dict[str, Any],
                         messages: list[dict[str, Any]]) -> int:
        """Save the assistant's tool calls, run the tools, save their results, and open
        the next pending message. Returns the next pending message's step_order."""
        tid, order = cmd.thread_id, res.order or 0
        calls = list(result.tool_calls)
        ctx = {"agent": agent, "user_id": cmd.user_id, "thread_id": tid,
               "prompt_message_id": res.prompt_message_id, "message_id": res.message_id}
        needs = [c for c in calls if getattr(by_name.get(c.name), "needs_approval", False)]
        outputs: list[ToolResultPart] = []
        if not needs:
            outputs = list(await asyncio.gather(
                *(self.run_tool(by_name.get(c.name), c, ctx) for c in calls)))
        events: list[Event] = [MessageFinalized(
            message_id=res.message_id or "", thread_id=tid, status="success",
            content=result.content_parts(), usage=result.usage,
            finish_reason=result.finish_reason, model=result.model, provider=result.provider)]
        for c in calls:
            events.append(ToolCallRequested(thread_id=tid, message_id=res.message_id or "",
                                            tool_call_id=c.id, tool_name=c.name, args=c.args))
        if needs:
            for c in needs:
                events.append(ToolApprovalRequested(
                    thread_id=tid, message_id=res.message_id or "", tool_call_id=c.id,
                    tool_name=c.name, args=c.args))
            res.awaiting_approval = [c.id for c in needs]
            res.status = "awaiting_approval"
            _, res.seq = await self._append(cmd, f"s{step}", events, res.persist)
            return step
        tool_msg_id = derived_id("tool", cmd.command_id, str(step))
        events.append(MessageSaved(message_id=tool_msg_id, thread_id=tid, order=order,
                                   step_order=step + 1, role="tool", content=list(outputs),
                                   agent_name=agent.name))
        for out in outputs:
            if out.is_error:
                events.append(ToolCallFailed(thread_id=tid, message_id=tool_msg_id,
                                             tool_call_id=out.tool_call_id,
                                             tool_name=out.tool_name, error=str(out.result)))
            else:
                events.append(ToolCallCompleted(thread_id=tid, message_id=tool_msg_id,
                                                tool_call_id=out.tool_call_id,
                                                tool_name=out.tool_name, result=out.result))
        next_id = derived_id("reply", cmd.command_id, str(step + 2))
        events.append(MessageSaved(message_id=next_id, thread_id=tid, order=order,
                                   step_order=step + 2, role="assistant", content=[],
                                   status="pending", agent_name=agent.name, model=agent.model,
                                   prompt_message_id=res.prompt_message_id))
        _, res.seq = await self._append(cmd, f"s{step}", events, res.persist)
        from handlers.llm.messages import ContextMessage, to_chat_messages

        messages.extend(to_chat_messages([
            ContextMessage(role="assistant", content=result.content_parts()),
            ContextMessage(role="tool", content=list(outputs))]))
        ev = self.aborts.pop(res.message_id or "", None)
        if ev is not None:  # an abort names the pending message: follow it
            self.aborts[next_id] = ev
        res.message_id = next_id
        return step + 2

    async def _append(self, cmd: Generate, tag: str, events: list[Event],
                      persist: bool = True) -> tuple[Any, int]:
        if not persist:
            return None, (await self.runner.states.get(cmd.thread_id)).version

        def decide(state: ThreadState) -> Decision:
            if _finalized_already(state, events):  # aborted from elsewhere (orphaned)
                if all(e.status == "failed" for e in events
                       if isinstance(e, MessageFinalized)):
                    return Decision([], {})
                raise ThreadlogError("generation aborted", code="aborted")
            return Decision(events, {})

        return await self.runner.apply(cmd.thread_id, f"{cmd.command_id}-{tag}", cmd.user_id,
                                       decide, lambda st: Decision([], {}),
                                       correlation_id=cmd.command_id)

    async def _finalize(self, cmd: Generate, res: GenerationResult, content: list[Any],
                        status: str, *, error: str | None = None,
                        finish_reason: str | None = None,
                        result: ModelResult | None = None,
                        extra: list[Event] | None = None) -> int:
        ev = MessageFinalized(
            message_id=res.message_id or "", thread_id=cmd.thread_id, status=status,
            content=content, usage=result.usage if result else None,
            finish_reason=finish_reason, error=error,
            model=result.model if result else None, provider=result.provider if result else None)
        _, seq = await self._append(cmd, "final", [ev, *(extra or [])], res.persist)
        return seq

    async def _record_usage(self, cmd: Generate, agent: Agent, result: ModelResult,
                            handler: UsageHandler | None) -> None:
        ev = UsageRecorded(call_id=result.call_id, user_id=cmd.user_id, thread_id=cmd.thread_id,
                           agent_name=agent.name, model=result.model, provider=result.provider,
                           usage=result.usage, cost=result.cost,
                           provider_metadata=result.provider_metadata)
        await self._record_usage_event(cmd, agent, ev, handler)

    async def _record_usage_event(self, cmd: Generate, agent: Agent, ev: UsageRecorded,
                                  handler: UsageHandler | None) -> None:
        """Append ``ev`` on ``usage.<user>`` with an id derived from its call id (a
        re-append is a duplicate), then call the usage handler."""
        agg = Aggregate("usage", cmd.user_id)
        env = self.store.envelopes(agg, [ev], user_id=cmd.user_id, command_id=None,
                                   correlation_id=cmd.command_id)[0]
        env = env.model_copy(update={"event_id": derived_id("usage", ev.call_id)})
        if self.append_usage is not None:
            await self.append_usage(cmd.user_id, env)
        else:
            await self.store.append(agg, [env])
        if handler is not None:
            out = handler(ev)
            if inspect.isawaitable(out):
                await out


def _finalized_already(state: ThreadState, events: list[Event]) -> bool:
    """Whether ``events`` finalize a message that is no longer pending (an abort taken by
    another process finalized it: ``handlers.agents.abort``)."""
    for e in events:
        if isinstance(e, MessageFinalized):
            info = state.messages.get(e.message_id)
            if info is not None and info.status != "pending":
                return True
    return False


def _embedded(agent: Agent, message_id: str, thread_id: str, vector: list[float] | None
              ) -> list[Event]:
    """The ``message_embedded`` event of ``vector`` (none without a vector)."""
    if vector is None or not agent.embedding_model:
        return []
    return [MessageEmbedded(message_id=message_id, thread_id=thread_id,
                            model=agent.embedding_model, dimensions=len(vector),
                            vector=vector)]
