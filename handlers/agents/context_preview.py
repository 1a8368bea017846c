"""``query.<u>.agent.context``: the exact context an agent's model would get for a prompt
in a thread, under chosen context options, without calling the model (Convex Agent's
``fetchContextWithPrompt``).

Body: ``{user_id?, thread_id, agent, prompt, context_options?, canvas_selection?}`` ->
``{agent, model, thread_id, order, seq, messages, search_hits, context_options, tools}``.
``context_options`` overrides the agent's (``recent_messages``,
``exclude_tool_messages``, ``search_messages``, ``text_search``,
``search_other_threads``, ``message_range``).

Guarantees
- The messages are built by the code a generation uses (``build_context``, the context
  search over ``query.<u>.messages.search``, the canvas reference snippets), from the
  thread's state as of now, followed by the prompt as a user message, in the order the
  model would receive them; nothing is appended to the log.
- No model is called, and no embedding either: vector search and vector matches of
  canvas edits are left out of the preview (``vector_search`` is reported ``false``),
  so a preview costs nothing and records no usage.
- Identity from the subject: a user sees previews of its own threads only (``forbidden``
  for another user's, ``not_found`` for an unknown thread, ``unknown_agent``).

Failure modes: ``invalid_input`` / ``invalid_json`` / ``payload_too_large`` for bad
bodies; a failing context search is skipped (logged), as in a generation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from events.decoding import validate_request
from events.ids import SafeId, new_id
from events.replies import Reply
from events.serving import answer
from handlers.agents.commands import Generate
from handlers.agents.context import build_context
from handlers.agents.generation import Generator
from handlers.threads.decisions import require_owned

log = logging.getLogger(__name__)

SUBJECT = "query.*.agent.context"
QUEUE = "threadlog-handlers"
STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)


class PreviewOptions(BaseModel):
    """The context options a preview may change (no vector search: it would embed)."""

    model_config = STRICT

    recent_messages: int | None = Field(None, ge=0, le=1_000)
    exclude_tool_messages: bool | None = None
    search_messages: int | None = Field(None, ge=0, le=100)
    text_search: bool | None = None
    search_other_threads: bool | None = None
    message_range: tuple[int, int] | None = None


class ContextPreviewQuery(BaseModel):
    model_config = STRICT

    user_id: SafeId
    thread_id: SafeId
    agent: str = Field(min_length=1, max_length=200)
    prompt: str = Field(min_length=1, max_length=100_000)
    context_options: PreviewOptions | None = None
    canvas_selection: list[SafeId] = Field(default_factory=list, max_length=1_000)


async def preview_context(generator: Generator, q: ContextPreviewQuery) -> dict[str, Any]:
    """The preview for ``q`` (raises ``NotFound``/``Forbidden``/``unknown_agent``)."""
    agent = generator.agents.get(q.agent)
    overrides = q.context_options.model_dump(exclude_none=True) if q.context_options else {}
    opts = dataclasses.replace(agent.context_options, **overrides, vector_search=False)
    view = dataclasses.replace(agent, context_options=opts, embedding_model=None)
    state = await generator.runner.states.get(q.thread_id)
    require_owned(state, q.user_id)
    order = state.last_order + 1
    cmd = Generate(command_id=new_id(), user_id=q.user_id, agent=q.agent,
                   thread_id=q.thread_id, prompt=q.prompt,
                   canvas_selection=list(q.canvas_selection))
    found = await generator._search(cmd, view, state.version, order, None)
    messages = build_context(state, view, order, 0, found)
    messages.append({"role": "user", "content": q.prompt})
    messages = await generator._with_canvas_context(cmd, view, list(agent.tools), messages)
    return {"agent": agent.name, "model": agent.model, "thread_id": q.thread_id,
            "order": order, "seq": state.version, "messages": messages,
            "search_hits": [f["message_id"] for f in found],
            "context_options": dataclasses.asdict(opts),
            "tools": [getattr(t, "name", str(t)) for t in agent.tools]}


class ContextPreviewService:
    """Serves :data:`SUBJECT` on a nats-py connection (queue group of the handlers);
    ``await start(nc)``, ``await stop()``."""

    def __init__(self, generator: Generator, *, max_request_bytes: int = 1_000_000) -> None:
        self.generator = generator
        self.max_request_bytes = max_request_bytes
        self._sub: Any = None
        self._nc: Any = None

    async def start(self, nc: Any) -> ContextPreviewService:
        self._nc = nc
        self._sub = await nc.subscribe(SUBJECT, queue=QUEUE, cb=self._on_msg)
        await nc.flush()
        return self

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def handle(self, subject: str, data: bytes) -> Reply:
        """The reply to one request (raises on refusal). The body acts for the subject's
        user (``events.identity.bind_user``: another ``user_id`` is ``forbidden``)."""
        q = validate_request(ContextPreviewQuery, data, max_bytes=self.max_request_bytes,
                             subject=subject)
        result = await preview_context(self.generator, q)
        return Reply.success(result, result["seq"])

    async def _on_msg(self, msg: Any) -> None:
        await answer(msg, self.handle, self._nc.max_payload, log)
