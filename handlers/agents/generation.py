"""Running an agent in a thread as a durable run of model steps and tool steps.

The parts: the prompt and pending message (``prompt``), the context and usage
(``generation_context``), the persisted steps (``steps``), the journal replay
(``progress``) and the queue that resumes generations whose process died (``durable``).

Guarantees
- The prompt and a ``pending`` assistant message are saved before the model is called;
  each step is saved when it ends (same ``order``, increasing ``step_order``); the final
  step finalizes the pending message, with the generation's totals.
- Resumable: :meth:`Generator.generate` on a command whose generation started before
  (a re-send, or the queue's worker after a crash) continues at the first incomplete step
  (``handlers.agents.progress``): a saved model step is never called again and a tool
  whose result is saved never runs again. A finished generation's result is returned from
  the thread's events without calling the model, at any later time.
- Any failure or abort after the pending message exists finalizes it as ``failed`` with
  the error: no message is left pending by a generation that has ended, and one whose
  process died is finished by another (``handlers.agents.durable``).
- The context is read from the thread state right after the prompt appends, bounded by
  the context options, not the thread.
- Structured output (``output_schema``, and ``validate_object`` in-process): the final
  answer's JSON (a Markdown code fence stripped) must satisfy the JSON schema and the
  validator (``handlers.llm.output_schema``); otherwise one repair call (not streamed,
  no tools, not counted against ``max_steps``) shows the model its answer and the errors.
  The saved message's text is the object's JSON.
- Call-level and thread-level tools (those that are not the agent's own) go into the
  queue message as import references (``handlers.agents.tool_refs``): a worker resuming
  the generation runs with them at the same precedence (call > thread > agent), or, if
  it cannot import one, does not run it (``unavailable``: naked for another worker;
  after ``GenerationQueueConfig.tools_unavailable_after`` deliveries that no worker
  could run, it is failed like a lost one, code ``tool_unavailable``). A
  generation with a tool without a reference is process-bound: resumed after its
  process died, its pending message is finalized ``failed`` with code ``worker_lost``
  (details ``tools``), calling neither the model nor any tool (a step's unsaved tool
  results become errors); a re-send answers that failure. Before that, the owner is
  asked again (:data:`LOST_PINGS` more liveness pings, ``signal_timeout_s`` apart): an
  owner that stalled for a moment keeps its generation. (A re-send of the command to
  another process before the worker's takeover resumes it there, with the re-sender's
  tools: a call to a tool it lacks answers an error result.) Callbacks (``on_text``, the
  call's or thread's usage handler, ``validate_object``) are the caller's: a resumed
  run uses the agent's usage handler and the command's ``output_schema`` only.

Failure modes: refusals (budget, unknown agent, foreign thread, an ``output_schema``
that is not a valid JSON schema: ``invalid_input``) append nothing; provider errors
after retries, ``max_steps``, deadlines, aborts and structured output still invalid
after the repair (``invalid_model_output``, ``details.errors``) finalize the message as
``failed`` with the error's text and code (``error``, ``error_code``) and raise a
:class:`ThreadlogError` whose ``details`` name the message (``message_id``) and the
stream sequence of that finalization (``seq``): a read with ``min_seq=seq`` sees it. A
re-sent command of a failed generation raises the same code with the same details.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from events import EventStore, MessageFinalized, ThreadlogError, ToolCallPart
from events.envelope import EventEnvelope
from handlers.agents.commands import Generate
from handlers.agents.context import build_context
from handlers.agents.definition import Agent, AgentRegistry, UsageHandler
from handlers.agents.durable import DELIVERIES, GenerationQueue, NotStarted
from handlers.agents.progress import Progress, progress, recorded_result
from handlers.agents.prompt import PromptMixin
from handlers.agents.result import GenerationResult, ThreadOptions, abort_key, add_usage, embedded
from handlers.agents.steps import PersistHook, StepsMixin, ToolRunner
from handlers.agents.tool_refs import (
    ToolRefError,
    carried_tools,
    not_run,
    process_bound,
    tool_headers,
)
from handlers.llm.errors import InvalidModelOutput
from handlers.llm.output_schema import ObjectParseError, OutputSchema, check_output_schema
from handlers.llm.results import ModelResult
from handlers.llm.structured_output import repair_messages
from handlers.llm.tools import Tool, resolve_tools
from handlers.runner import CommandRunner
from handlers.streaming import DeltaWriter
from handlers.threads.decisions import require_owned

__all__ = ["DeltaSink", "GenerationResult", "Generator", "StepCaller", "ThreadOptions",
           "ToolRunner", "add_usage"]
DeltaSink = Callable[[str], Awaitable[None]]
log = logging.getLogger(__name__)
LOST_PINGS = 3
"""Liveness pings a process-bound generation's owner misses before it is ``worker_lost``
(after the queue worker's own: about a second with the default ``signal_timeout_s``)."""
BudgetCheck = Callable[[str, str, list[dict[str, Any]], int | None], Awaitable[Any]]


class StepCaller(Protocol):
    """One model step (with retries/fallbacks inside), streaming text to ``on_text``."""

    async def __call__(self, agent: Agent, messages: list[dict[str, Any]],
                       tools: list[Any], *, on_text: DeltaSink | None,
                       abort: asyncio.Event | None,
                       output_schema: dict[str, Any] | None) -> ModelResult: ...


class Generator(PromptMixin, StepsMixin):
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
        """Abort events of the generations running here, by ``abort_key(thread, message)``
        (message ids are unique per thread only: another user may use the same one)."""
        self.thread_options: dict[str, ThreadOptions] = {}
        self.canvas: Any = None
        """The CanvasService, for reference snippets of canvas edits in the context."""
        self.check_budget: BudgetCheck | None = None
        """Called before anything is appended or the model called; raises to refuse."""
        self.append_usage: Callable[[str, EventEnvelope], Awaitable[Any]] | None = None
        """Appends a usage event of a user (the budget's ledger, which folds it)."""
        self.queue: GenerationQueue | None = None
        """The durable queue (``handlers.agents.durable``); without it generations run
        in-process only (a crash leaves them to a re-send)."""
        self.on_persist: PersistHook | None = None
        self.admission: Callable[[Generate, asyncio.Event],
                                 contextlib.AbstractAsyncContextManager[Any]] | None = None
        """Entered around a generation's steps (after its prompt and pending message are
        appended and its queue message is stored, before its first model call, within
        its deadline) and left when they end or pause: a limit on generations running at
        once (``handlers.generation_limits``), given the generation's abort event; what
        it raises fails the generation like a step would. ``None``: no limit."""
        self._pending: set[asyncio.Future[None]] = set()

    async def generate(self, cmd: Generate, *, on_text: DeltaSink | None = None,
                       tools: list[Any] | None = None,
                       usage_handler: UsageHandler | None = None,
                       validate_object: Callable[[Any], Any] | None = None,
                       already_done: Awaitable[Any] | None = None,
                       from_queue: bool = False,
                       queue_headers: Mapping[str, str] | None = None
                       ) -> GenerationResult | Any:
        """Run (or resume, or answer from the record) the generation of ``cmd``.

        Tools and the usage handler resolve call > thread > agent (most specific wins).
        ``already_done`` (the command log's lookup, started by the caller) is awaited after
        the prompt append: a stored reply is returned as is. ``from_queue``: called by the
        queue's worker (the message is held already; ``queue_headers`` are its
        headers: the tools it carries are resolved before anything runs, see the
        module). With ``storage="none"`` nothing is saved to the thread (usage is still
        recorded) and nothing is durable."""
        agent = self.agents.get(cmd.agent)
        if cmd.output_schema is not None:
            check_output_schema(cmd.output_schema)  # invalid_input, before any append
        if self.check_budget is not None and not from_queue:
            await self.check_budget(cmd.user_id, agent.model,
                                    [{"role": "user", "content": cmd.prompt or ""}],
                                    agent.call_settings.max_tokens)
        topts = self.thread_options.get(cmd.thread_id, ThreadOptions())
        bound = process_bound(queue_headers) if from_queue else None
        lost = None if bound is None else ThreadlogError(
            f"the process running this generation died, and its tools {', '.join(bound)} "
            "existed only there (no import reference: define them with @tool at module "
            "level to let another process resume it)", code="worker_lost",
            details={"tools": bound})
        if from_queue and lost is None:
            try:  # before any run
                tools = [*(tools or []), *self._carried(cmd, queue_headers)]
            except ThreadlogError as exc:
                lost = self._tools_unavailable(cmd, queue_headers, exc)
        tool_list = list(resolve_tools(agent.tools, topts.tools, tools).values())
        handler = usage_handler or topts.usage_handler or agent.usage_handler
        if agent.storage == "none":
            return await self._generate_unsaved(cmd, agent, tool_list, handler, on_text,
                                                validate_object)
        q = self.queue
        args = (cmd, agent, tool_list, handler, on_text, validate_object, already_done)
        if q is None:
            return await self._generate_saved(*args, None)
        while True:
            if cmd.command_id in q.local:  # a duplicate in this process: wait for it
                await asyncio.shield(q.local[cmd.command_id])
                continue
            p = progress(await self.runner.states.get(cmd.thread_id), cmd.command_id)
            if p is not None and not p.finished and not from_queue \
                    and await q.running_elsewhere(cmd.command_id):
                await q.wait_elsewhere(cmd.command_id, q.config.ack_wait)
                await self.runner.states.refresh(cmd.thread_id)
                continue
            if lost is not None and (p is None or not p.finished) \
                    and await self._owner_alive(q, cmd):  # asked before claiming it here
                raise NotStarted(f"generation {cmd.command_id!r} is still run by its process",
                                 details={"command_id": cmd.command_id})
            fut = q.claim(cmd)
            if fut is None:
                continue
            finished = True
            try:
                if lost is not None and (p is None or not p.finished):
                    await self._lost(cmd, agent, p, lost)
                    return None
                ack = None if from_queue or (p is not None and p.finished) \
                    else await q.enqueue(cmd, headers=tool_headers(agent.tools, tool_list))
                return await self._generate_saved(*args, ack)
            except NotStarted:
                finished = False  # nothing ran: the queue message goes to another worker
                raise
            finally:
                q.release(cmd, fut, finished=finished)

    @staticmethod
    async def _owner_alive(q: GenerationQueue, cmd: Generate) -> bool:
        """Whether the process running ``cmd`` answers one of :data:`LOST_PINGS` more
        liveness pings (a process-bound generation is failed only when none does)."""
        for _ in range(LOST_PINGS):
            await asyncio.sleep(q.config.signal_timeout_s)
            if await q.running_elsewhere(cmd.command_id):
                return True
        return False

    @staticmethod
    def _carried(cmd: Generate, headers: Mapping[str, str] | None) -> list[Tool[Any]]:
        """The call-level and thread-level tools a queue message carries, resolved here
        (``handlers.agents.tool_refs``); ``unavailable`` if one does not resolve in this
        process: the queue's worker naks the message for a worker that has them."""
        try:
            return carried_tools(headers)
        except ToolRefError as exc:
            raise ThreadlogError(
                f"generation {cmd.command_id!r} needs a tool this process cannot load: {exc}",
                code="unavailable", details={"command_id": cmd.command_id,
                                             "reason": str(exc)}) from exc

    def _tools_unavailable(self, cmd: Generate, headers: Mapping[str, str] | None,
                           exc: ThreadlogError) -> ThreadlogError:
        """``exc`` (a tool reference this worker cannot import) again, to leave the
        generation to another worker; or, once it was delivered
        ``tools_unavailable_after`` times, the ``tool_unavailable`` error to fail it with
        (never left pending for ever)."""
        limit = self.queue.config.tools_unavailable_after if self.queue else 0
        try:
            deliveries = int((headers or {}).get(DELIVERIES, "0"))
        except ValueError:
            deliveries = 0
        if not limit or deliveries < limit:
            raise exc
        return ThreadlogError(
            f"no worker could load a tool of this generation in {deliveries} deliveries: "
            f"{exc.details.get('reason', exc.message)}", code="tool_unavailable",
            details={"reason": exc.details.get("reason", exc.message),
                     "deliveries": deliveries})

    async def _lost(self, cmd: Generate, agent: Agent, p: Progress | None,
                    err: ThreadlogError) -> None:
        """A generation no live worker can run (its process died and its tools existed
        only there, ``worker_lost``; or no worker could import them, ``tool_unavailable``):
        finalize its pending message as ``failed`` with ``err``, calling neither the model
        nor any tool. A step whose tools were to run gets their saved results or, for those
        not saved, error results (none runs), then the next pending message, finalized as
        failed. Raises the recorded error (a re-send answers it); a generation that never
        saved its pending message is dropped (``None``)."""
        if p is None:
            log.warning("generation %s never started and cannot be run: dropped (%s)",
                        cmd.command_id, err.message)
            return None
        res = GenerationResult(cmd.thread_id, p.prompt_message_id, p.message_id, p.order, "",
                               steps=p.model_steps, usage=p.usage, cost=p.cost)
        if p.calls:  # the step's tools: saved results, else errors (nothing runs)
            stubs = {c.tool_name: not_run(c.tool_name, err.message) for c in p.calls}
            try:
                await self._run_tools(cmd, agent, res, p.calls, p.step, stubs, [], p.content)
            except BaseException as exc:
                raise (await self._failed(cmd, res, exc, deadline_hit=False)) from exc
        raise await self._failed(cmd, res, err, deadline_hit=False)

    async def _generate_saved(self, cmd: Generate, agent: Agent, tool_list: list[Any],
                              handler: UsageHandler | None, on_text: DeltaSink | None,
                              validate_object: Callable[[Any], Any] | None,
                              already_done: Awaitable[Any] | None,
                              enqueued: Awaitable[Any] | None) -> GenerationResult | Any:
        try:
            if self.on_persist is not None:
                await self.on_persist(cmd.command_id, "before:prompt")
            decision, seq, saved, prompt_vector = await self._save_prompt(cmd, agent, handler)
            if self.on_persist is not None:
                await self.on_persist(cmd.command_id, "after:prompt")
        except BaseException:
            if enqueued is not None:
                with contextlib.suppress(Exception):
                    await enqueued
            raise
        if already_done is not None:
            stored = await already_done
            if stored is not None:
                return stored
        state = await self.runner.states.get(cmd.thread_id)
        p = progress(state, cmd.command_id)
        assert p is not None, "the pending message was just saved"
        if p.finished:
            require_owned(state, cmd.user_id)
            try:
                return await recorded_result(self.store, state, cmd.command_id, p,
                                             with_object=cmd.output_schema is not None)
            except ThreadlogError as exc:  # a failed generation, answered again
                if p.final is not None and p.final.error_code:
                    exc.code = p.final.error_code
                exc.details = {**exc.details, "message_id": p.message_id,
                               "seq": state.version}
                raise
        r = decision.result
        res = GenerationResult(cmd.thread_id, r["prompt_message_id"], p.message_id,
                               r["order"], "", seq=seq, usage_handler=handler,
                               steps=p.model_steps, usage=p.usage, cost=p.cost)
        try:
            if saved and agent.context_options.vector_search and \
                    agent.context_options.search_messages > 0:  # re-sent, unfinished before
                prompt_vector = await self._embed_prompt(cmd, agent, handler)
            found = await self._search(cmd, agent, state.version, r["order"], prompt_vector)
            messages = build_context(state, agent, r["order"], p.step, found)
            messages = await self._with_canvas_context(cmd, agent, tool_list, messages,
                                                       handler, prompt_vector)
        except BaseException as exc:  # the pending message exists: finalize it as failed
            if enqueued is not None:
                with contextlib.suppress(Exception):
                    await enqueued
            raise (await self._failed(cmd, res, exc, deadline_hit=False)) from exc
        return await self.run_loop(cmd, agent, res, messages, p.step, on_text=on_text,
                                   tools=tool_list, validate_object=validate_object,
                                   resume=(p.calls, p.content), enqueued=enqueued)

    async def _generate_unsaved(self, cmd: Generate, agent: Agent, tools: list[Any],
                                handler: UsageHandler | None, on_text: DeltaSink | None,
                                validate_object: Callable[[Any], Any] | None
                                ) -> GenerationResult:
        """``storage="none"``: the thread is context only; no message is appended."""
        from events import derived_id

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
                       validate_object: Callable[[Any], Any] | None = None,
                       resume: tuple[list[ToolCallPart], list[Any]] = ([], []),
                       enqueued: Awaitable[Any] | None = None) -> GenerationResult:
        """Steps from the message ``res.message_id`` at ``step`` on: first the recorded
        tool calls of ``resume`` (calls, the step's content) if any, then model steps."""
        writer = (self.delta_writer(cmd.user_id, cmd.thread_id, res.message_id or "",
                                    cmd.command_id)
                  if cmd.stream and self.delta_writer else None)
        abort = self.aborts.setdefault(abort_key(cmd.thread_id, res.message_id or ""),
                                       asyncio.Event())
        deadline = asyncio.timeout(cmd.deadline_s)
        try:
            async with deadline:
                if enqueued is not None:
                    await enqueued  # durable before the first model call
                async with self.admission(cmd, abort) if self.admission is not None \
                        else contextlib.nullcontext():  # a slot, within the deadline
                    tool_list = agent.tools if tools is None else tools
                    if resume[0]:
                        step = await self._run_tools(cmd, agent, res, resume[0], step,
                                                     {t.name: t for t in tool_list},
                                                     messages, resume[1])
                    await self._loop(cmd, agent, res, messages, step, tool_list, on_text,
                                     writer, abort, validate_object)
        except NotStarted:
            raise  # nothing ran: left pending for the queue, not finalized
        except BaseException as exc:
            err = await self._failed(cmd, res, exc, deadline_hit=isinstance(
                exc, TimeoutError) and deadline.expired())
            if writer is not None:
                await writer.close("failed")
            raise err from exc
        finally:
            self.aborts.pop(abort_key(cmd.thread_id, res.message_id or ""), None)
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

        async def sink(text: str) -> None:
            if writer is not None:
                await writer.write(text)
            if on_text is not None:
                await on_text(text)

        for n in range(res.steps, max_steps):
            offered = tools if n < max_steps - 1 else []
            result = await self.call_step(
                agent, messages, offered, on_text=sink if (writer or on_text) else None,
                abort=abort, output_schema=cmd.output_schema)
            usage_recorded = self._account(cmd, agent, res, result)
            await asyncio.sleep(0)  # its append goes out before this step's: stored first
            res.finish_reason = result.finish_reason
            if result.aborted:
                raise ThreadlogError("generation aborted", code="aborted")
            if not result.tool_calls:
                if cmd.output_schema is not None:
                    result, res.object = await self._final_object(
                        cmd, agent, res, messages, result, abort, validate_object)
                res.text = result.text
                vector = (await self._embed(cmd, agent, res.message_id or "", result.text,
                                            res.usage_handler) if res.persist else None)
                res.seq = await self._finalize(
                    cmd, res, result.content_parts(), "success",
                    finish_reason=result.finish_reason, result=result,
                    extra=embedded(agent, res.message_id or "", cmd.thread_id, vector))
                await usage_recorded
                return
            step = await self._tool_step(cmd, agent, res, result, step, by_name, messages)
            await usage_recorded
            if res.awaiting_approval:
                return
        raise ThreadlogError(f"no final answer within {max_steps} steps",
                             code="max_steps_reached", details={"max_steps": max_steps})

    def _account(self, cmd: Generate, agent: Agent, res: GenerationResult,
                 result: ModelResult) -> asyncio.Future[None]:
        """Count a model call in the generation's totals and record its usage (in the
        background: the returned future; ``run_loop`` awaits it on failure too)."""
        res.steps += 1
        res.usage = add_usage(res.usage, result.usage)
        res.cost += result.cost
        fut = asyncio.ensure_future(self._record_usage(cmd, agent, result, res.usage_handler))
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)
        return fut

    async def _final_object(self, cmd: Generate, agent: Agent, res: GenerationResult,
                            messages: list[dict[str, Any]], result: ModelResult,
                            abort: asyncio.Event, validate_object: Callable[[Any], Any] | None
                            ) -> tuple[ModelResult, Any]:
        """The object of a final answer (``output_schema``): the answer's JSON (a code fence
        stripped) checked against the schema and ``validate_object``; else one repair call
        (not streamed, no tools) shown the answer and its errors; else
        ``InvalidModelOutput`` with the errors. Returns the answer whose text is the
        object's JSON (the saved message's text) and the object."""
        shape = OutputSchema(cmd.output_schema or {}, validate_object)
        try:
            parsed = shape.parse(result.text)
            return replace(result, text=parsed.body, tool_calls=()), parsed.value
        except ObjectParseError as exc:
            first = exc
        again = await self.call_step(agent, repair_messages(messages, result.text, first), [],
                                     on_text=None, abort=abort,
                                     output_schema=cmd.output_schema)
        recorded = self._account(cmd, agent, res, again)
        res.finish_reason = again.finish_reason
        try:
            if again.aborted:
                raise ThreadlogError("generation aborted", code="aborted")
            parsed = shape.parse(again.text)
        except ObjectParseError as exc:
            raise InvalidModelOutput(
                f"model output did not match {shape.name} after one repair attempt: {exc}",
                details={"errors": exc.errors, "output": again.text[:2000],
                         "first_errors": first.errors, "schema": shape.name},
                results=(result, again)) from None
        finally:
            await recorded
        return replace(again, text=parsed.body, tool_calls=()), parsed.value

    async def _failed(self, cmd: Generate, res: GenerationResult, exc: BaseException, *,
                      deadline_hit: bool) -> ThreadlogError:
        """The error a generation stopped by ``exc`` answers, after its pending message is
        finalized as ``failed`` with the error's text and code; its ``details`` name the
        message and the finalization's stream sequence (``message_id``, ``seq``).

        A ``ThreadlogError`` keeps its code; a cancellation is ``aborted``; the deadline
        (``deadline_hit``) is ``timeout``; anything else ``generation_failed``. Usage
        appends still in flight are awaited first (their failures are ignored here)."""
        err = exc if isinstance(exc, ThreadlogError) else ThreadlogError(
            f"generation failed: {type(exc).__name__}: {exc}", code="generation_failed")
        if isinstance(exc, asyncio.CancelledError):
            err = ThreadlogError("generation aborted", code="aborted")
        elif deadline_hit:
            err = ThreadlogError(
                f"generation stopped at its deadline ({cmd.deadline_s}s)", code="timeout",
                details={"deadline_s": cmd.deadline_s})
        res.status = "failed"
        for fut in list(self._pending):
            with contextlib.suppress(Exception):
                await fut
        seq = await self._finalize_failed(cmd, res, err)
        err.details = {**err.details, "message_id": res.message_id, "seq": seq}
        return err

    async def _finalize_failed(self, cmd: Generate, res: GenerationResult,
                               err: ThreadlogError) -> int:
        """Finalize the pending message as ``failed`` with the error's text and code and
        the generation's totals; the stream sequence of the append (the thread's version
        when nothing is saved, or the message was finalized elsewhere)."""
        ev = MessageFinalized(
            message_id=res.message_id or "", thread_id=cmd.thread_id, status="failed",
            content=[], finish_reason=res.finish_reason or "error", error=err.message,
            error_code=err.code,
            generation={"steps": res.steps, "usage": res.usage.model_dump(), "cost": res.cost})
        _, seq = await self._append(cmd, "final", [ev], res.persist)
        return int(seq)

