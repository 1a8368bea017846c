"""The query service: validate, wait for ``min_seq``, read on a cursor of its own, reply.

Subjects (``<prefix>.<name>``, prefix ``query``): ``threads.list``, ``threads.get``,
``messages.list``, ``messages.get``, ``usage.summary``, ``sql``, ``status``. Every reply
has the shape of :class:`events.replies.Reply`; ``seq`` is the projection checkpoint the
read saw (at least ``min_seq`` when given).

Failure modes: invalid input is ``invalid_input`` (``invalid_json`` for a body that is
not a JSON object; strict types, bounded nesting: ``events.decoding``) with the failing
fields; a reply over the connection's max payload is ``reply_too_large``; a ``min_seq``
not reached within the wait is ``timeout`` with ``details.checkpoint``/``min_seq``/
``behind``; reads raise ``not_found`` and ``forbidden``; ``sql`` adds ``sql_error``/
``sql_forbidden``/``sql_row_limit``/``sql_timeout``; anything unexpected is ``internal`` (logged).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import duckdb

from events.decoding import validate_request
from events.errors import ThreadlogError
from events.replies import Reply, bounded_reply, reply_for
from projections.projector import Projector
from projections.queries import models, reads
from projections.queries.sql import SqlLimits, run_sql

log = logging.getLogger(__name__)

Read = Callable[[duckdb.DuckDBPyConnection, Any], dict[str, Any]]


@dataclass(frozen=True)
class QuerySpec:
    name: str
    model: type[models.Query]
    description: str


QUERIES: tuple[QuerySpec, ...] = (
    QuerySpec("threads.list", models.ThreadsList,
              "The user's threads, cursor-paginated by creation, asc or desc."),
    QuerySpec("threads.get", models.ThreadsGet, "One thread of the user."),
    QuerySpec("messages.list", models.MessagesList,
              "A thread's messages newest first, cursor-paginated; exclude_tool_messages, "
              "statuses filter."),
    QuerySpec("messages.get", models.MessagesGet, "Messages by id (the user's only)."),
    QuerySpec("messages.search", models.MessagesSearch,
              "Text and/or vector search over the user's messages (a thread, or all "
              "threads), merged by reciprocal rank fusion, hits widened by neighbouring "
              "messages."),
    QuerySpec("usage.summary", models.UsageSummary,
              "Token and cost totals per billing period and model for the user."),
    QuerySpec("sql", models.SqlQuery,
              "Operators only: read-only SQL over the views (row and time limits)."),
    QuerySpec("status", models.StatusQuery,
              "Projection checkpoint, stream lag and per-view versions."),
)

_READS: dict[str, Read] = {
    "threads.list": reads.threads_list,
    "threads.get": reads.thread_get,
    "messages.list": reads.messages_list,
    "messages.get": reads.messages_get,
    "messages.search": reads.messages_search,
    "usage.summary": reads.usage_summary,
}


class QueryService:
    """Runs queries against a :class:`Projector` (in its process)."""

    def __init__(self, projector: Projector, *, sql_limits: SqlLimits | None = None,
                 prefix: str = "query", max_request_bytes: int = 1_000_000) -> None:
        self.projector = projector
        self.max_request_bytes = max_request_bytes
        self.sql_limits = sql_limits or SqlLimits()
        self.prefix = prefix
        self._cursor_lock = threading.Lock()
        self._specs = {s.name: s for s in QUERIES}

    def subject(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def max_reply_bytes(self) -> int | None:
        """The projector connection's max payload (the server's INFO), if known."""
        limit = getattr(self.projector.nc, "max_payload", None)
        return limit if isinstance(limit, int) and limit > 0 else None

    async def handle_raw(self, name: str, payload: bytes) -> Reply:
        """Validate a JSON request body for query ``name`` (size, strict JSON, model:
        ``events.decoding.validate_request``), run it, and bound the reply by the
        connection's max payload (``reply_too_large``)."""
        spec = self._specs.get(name)
        if spec is None:
            return Reply.failure(ThreadlogError(f"unknown query {name!r}", code="not_found",
                                                details={"known": sorted(self._specs)}))
        try:
            query = validate_request(spec.model, payload, max_bytes=self.max_request_bytes)
        except Exception as exc:
            return reply_for(exc, where=self.subject(name))
        reply = await self.execute(name, query)
        return bounded_reply(reply, self.max_reply_bytes())

    async def execute(self, name: str, query: models.Query) -> Reply:
        """Run a validated query; every error becomes a failure reply."""
        try:
            if query.min_seq is not None:
                cap = self.projector.config.min_seq_timeout_s
                await self.projector.wait_for(query.min_seq, min(query.wait_s or cap, cap))
            seq = self.projector.checkpoint
            if name == "status":
                return Reply.success(await self.projector.status(), seq=seq)
            if name == "sql":
                assert isinstance(query, models.SqlQuery)
                result = await self._in_thread(
                    lambda cur: run_sql(cur, query.sql, self.sql_limits, query.max_rows))
            else:
                read = _READS[name]
                result = await self._in_thread(lambda cur: read(cur, query))
            return Reply.success(result, seq=seq)
        except Exception as exc:
            return reply_for(exc, where=self.subject(name))

    async def _in_thread(self, fn: Callable[[duckdb.DuckDBPyConnection], dict[str, Any]]
                         ) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            with self.projector.reading() as cur:
                return fn(cur)

        return await asyncio.to_thread(run)


Handler = Callable[[bytes], Awaitable[Reply]]
