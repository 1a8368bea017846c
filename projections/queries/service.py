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
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import duckdb

from events.decoding import check_size, decode_json_body, validate_model
from events.errors import ThreadlogError
from events.identity import USER_PLACEHOLDER, bind_to_user, for_user
from events.replies import Reply, bounded_reply, reply_for
from projections.health import for_users
from projections.projector import Projector
from projections.queries import models, reads
from projections.queries.sql import SqlLimits, run_sql

log = logging.getLogger(__name__)

Read = Callable[[duckdb.DuckDBPyConnection, Any], dict[str, Any]]


@dataclass(frozen=True)
class QuerySpec:
    """One query. A user's query is ``query.<user_id>.<name>`` (the server lets a
    user-role connection publish only under its own id, so the subject names the user the
    read is for); an operators' query is ``ops.<name>`` (operator and service roles only).
    """

    name: str
    model: type[models.Query]
    description: str
    operators: bool = False


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
    QuerySpec("status", models.StatusQuery,
              "Projection checkpoint, stream lag, per-view versions, rejected events "
              "(no file paths)."),
    QuerySpec("sql", models.SqlQuery,
              "Operators only: read-only SQL over the views (row, time and memory limits).",
              operators=True),
    QuerySpec("status", models.StatusQuery,
              "Operators only: the status with the database file's path.", operators=True),
)

PRIVATE_STATUS_KEYS = frozenset({"db_path"})
MAX_WAITS_PER_USER = 8
"""Reads of one user that may wait for ``min_seq`` at once (``rate_limited`` beyond)."""
QUERY_CONCURRENCY = 512
"""Requests each query subject serves at once per process: waits for ``min_seq`` take
no thread, reads run on the read pool."""
"""Status fields shown to operators only (the server's file paths)."""

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
                 prefix: str = "query", max_request_bytes: int = 1_000_000,
                 read_threads: int = 4) -> None:
        self.projector = projector
        self.max_request_bytes = max_request_bytes
        self.sql_limits = sql_limits or SqlLimits()
        self.prefix = prefix
        self.ops_prefix = "ops" if prefix == "query" else f"{prefix}.ops"
        self._waiting: Counter[str] = Counter()
        # Operators' SQL runs on a thread of its own (one query at a time: the memory
        # watch is per process), users' reads on their own pool: heavy SQL never holds a
        # thread a user's read is waiting for. Waits for min_seq take no thread at all.
        self._sql_pool = ThreadPoolExecutor(1, thread_name_prefix="threadlog-sql")
        self._read_pool = ThreadPoolExecutor(read_threads, thread_name_prefix="threadlog-read")
        self._specs = {self.template(s): s for s in QUERIES}

    def template(self, spec: QuerySpec) -> str:
        """``spec``'s subject template (``{user_id}``: FastStream's path syntax)."""
        if spec.operators:
            return f"{self.ops_prefix}.{spec.name}"
        return f"{self.prefix}.{USER_PLACEHOLDER}.{spec.name}"

    def wildcard(self, spec: QuerySpec) -> str:
        return self.template(spec).replace(USER_PLACEHOLDER, "*")

    def subject(self, name: str, user_id: str | None = None, *,
                operators: bool = False) -> str:
        """The subject of query ``name`` for ``user_id`` (an operators' query with
        ``operators=True``, or when only operators have one of that name)."""
        ops = operators or not any(s.name == name and not s.operators for s in QUERIES)
        spec = QuerySpec(name, models.Query, "", operators=ops)
        return for_user(self.template(spec), user_id or "*")

    def max_reply_bytes(self) -> int | None:
        """The projector connection's max payload (the server's INFO), if known."""
        limit = getattr(self.projector.nc, "max_payload", None)
        return limit if isinstance(limit, int) and limit > 0 else None

    async def handle_raw(self, spec: QuerySpec | str, payload: bytes, *,
                         subject: str | None = None) -> Reply:
        """Validate a JSON request body for query ``spec`` (size, strict JSON, model:
        ``events.decoding.validate_request``; with ``subject``, the read is for the
        subject's user: ``events.identity``), run it, and bound the reply by the
        connection's max payload (``reply_too_large``)."""
        found = spec if isinstance(spec, QuerySpec) else self._specs.get(spec)
        if found is None:
            return Reply.failure(ThreadlogError(f"unknown query {spec!r}", code="not_found",
                                                details={"known": sorted(self._specs)}))
        where = self.template(found)
        try:
            body = decode_json_body(check_size(payload, self.max_request_bytes))
            if subject is not None and not found.operators:
                bind_to_user(body, subject.split(".")[1])
            query = validate_model(found.model, body)
        except Exception as exc:
            return reply_for(exc, where=where)
        reply = await self.execute(found.name, query, operators=found.operators)
        return bounded_reply(reply, self.max_reply_bytes())

    async def execute(self, name: str, query: models.Query, *,
                      operators: bool = False) -> Reply:
        """Run a validated query; every error becomes a failure reply. ``operators``: the
        request came on an ``ops.*`` subject (full status)."""
        try:
            if query.min_seq is not None and self.projector.checkpoint < query.min_seq:
                await self._wait_for(query)
            seq = self.projector.checkpoint
            if name == "status":
                status = await self.projector.status()
                if not operators:
                    status = {k: v for k, v in status.items() if k not in PRIVATE_STATUS_KEYS}
                    status["projector"] = for_users(self.projector.health()).to_dict()
                return Reply.success(status, seq=seq)
            if name == "sql":
                assert isinstance(query, models.SqlQuery)
                result = await self._in_thread(
                    lambda cur: run_sql(cur, query.sql, self.sql_limits, query.max_rows),
                    self._sql_pool)
            else:
                read = _READS[name]
                result = await self._in_thread(lambda cur: read(cur, query), self._read_pool)
            return Reply.success(result, seq=seq)
        except Exception as exc:
            return reply_for(exc, where=name)

    async def _wait_for(self, query: models.Query) -> None:
        """Wait (bounded) until the projection reaches ``query.min_seq``. A user may have
        at most :data:`MAX_WAITS_PER_USER` reads waiting at once (``rate_limited``
        beyond): waits take no thread, but each holds a request slot of the subscriber,
        and one user must not hold them all."""
        assert query.min_seq is not None
        user = getattr(query, "user_id", None) or ""
        if self._waiting[user] >= MAX_WAITS_PER_USER:
            raise ThreadlogError(
                f"{MAX_WAITS_PER_USER} reads of this user already wait for min_seq; retry "
                "when they are answered", code="rate_limited",
                details={"limit": MAX_WAITS_PER_USER, "retry_after_s": 1.0})
        self._waiting[user] += 1
        try:
            cap = self.projector.config.min_seq_timeout_s
            await self.projector.wait_for(query.min_seq, min(query.wait_s or cap, cap))
        finally:
            self._waiting[user] -= 1
            if not self._waiting[user]:
                del self._waiting[user]

    async def _in_thread(self, fn: Callable[[duckdb.DuckDBPyConnection], dict[str, Any]],
                         pool: ThreadPoolExecutor) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            with self.projector.reading() as cur:
                return fn(cur)

        return await asyncio.get_running_loop().run_in_executor(pool, run)

    def close(self) -> None:
        """Stop the worker threads (running reads finish)."""
        self._sql_pool.shutdown(wait=False, cancel_futures=True)
        self._read_pool.shutdown(wait=False, cancel_futures=True)


Handler = Callable[[bytes], Awaitable[Reply]]
