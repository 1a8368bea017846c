"""The generation's context and bookkeeping around model calls: context search, embeddings
(prompt and final text), canvas reference snippets, and usage events.

Guarantees
- Every model or embedding call appends one ``usage_recorded`` event on ``usage.<user_id>``
  whose id derives from the call id: retries and re-appends never double count. A model
  call whose process died after it answered is billed once for that call; the resumed
  generation's new call is billed as the new call it is.
- Embedding call ids derive from the command id: a resumed or re-sent generation
  records an embedding's usage once.
- Context search asks the projector with ``min_seq`` = the thread's version after the
  prompt append (read your writes).

Failure modes: an embedding failure is logged and leaves the message without a vector;
a search that no projector answers is skipped with a warning; a usage append failure
propagates (the generation fails and finalizes its message as ``failed``).
"""

from __future__ import annotations

import inspect
import logging
import math
from typing import Any

from events import Aggregate, EventStore, ThreadlogError, UsageRecorded, derived_id
from events.thread_events import MAX_EMBEDDING_DIMENSIONS
from handlers.agents.commands import Generate
from handlers.agents.definition import Agent, UsageHandler
from handlers.llm.results import ModelResult

log = logging.getLogger(__name__)
CANVAS_TOOL_NAMES = frozenset({"read_canvas", "edit_canvas", "revert_canvas_edit"})


class ContextMixin:
    """Part of :class:`handlers.agents.generation.Generator` (see the module)."""

    store: EventStore
    canvas: Any
    append_usage: Any

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

    async def _record_usage(self, cmd: Generate, agent: Agent, result: ModelResult,
                            handler: UsageHandler | None) -> None:
        """The call's ``usage_recorded``, marked ``estimated`` when the provider reported
        no usage (``ModelResult.usage_estimated``)."""
        ev = UsageRecorded(call_id=result.call_id, user_id=cmd.user_id, thread_id=cmd.thread_id,
                           agent_name=agent.name, model=result.model, provider=result.provider,
                           usage=result.usage, cost=result.cost,
                           provider_metadata=result.provider_metadata,
                           estimated=result.usage_estimated)
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


