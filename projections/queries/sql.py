"""Read-only analytical SQL over the views (``query.sql`` and ``threadlog sql``).

For operators: every view of every user is visible (later issues add permissions).

Guarantees (strongest layer first; measured on DuckDB 2.0.1, see the tests in
``tests/projections/queries/test_sql_attacks.py``):

1. **A read-only transaction.** The statements run on a fresh cursor inside
   ``BEGIN TRANSACTION READ ONLY`` that is always rolled back. DuckDB refuses any write to
   the database in it ("transaction is launched in read-only mode"): DML in a CTE,
   ``INSERT ... RETURNING``, ``EXPLAIN ANALYZE UPDATE``, ``nextval``, CREATE/DROP...
   Measured alternatives that do not hold or cannot be had in the projector process: a
   second read-only DuckDB instance or ``ATTACH ... (READ_ONLY)`` of the same file is
   refused ("Unique file handle conflict" / "different configuration"); ``access_mode``
   cannot change while the database is open; ``lock_configuration`` is global (it would
   also forbid the projector's own ``SET GLOBAL max_vacuum_tasks`` between catch-up and
   live) and cannot be unset; settings are not transactional (a SET inside the read-only
   transaction sticks), nor are CHECKPOINT, ATTACH ':memory:', LOAD, temporary objects or
   ``enable_logging()``, hence layer 2.
2. **Only proven readers run** (:mod:`projections.queries.sql_guard`): each statement's
   DuckDB parse tree must contain only query nodes that read, allowlisted table functions,
   no side-effecting scalar function, and bounded sizes for value-amplifying functions.
   This refuses SET/RESET/PRAGMA (also under ``EXPLAIN ANALYZE``), CALL, ATTACH/DETACH,
   USE, COPY, EXPORT, INSTALL/LOAD, CHECKPOINT, macros, transactions and several-statement
   scripts with any of these.
3. **No file access**: the database is opened with ``enable_external_access = false``
   (:func:`projections.projector.open_database`), so file-reading table functions,
   secrets and extension installs fail inside DuckDB (``sql_error``, "disabled").
4. **Bounded time, memory and result.** A watch thread polls every
   :data:`WATCH_INTERVAL_S`; past ``time_limit_s`` or when the process's resident memory
   has grown by more than ``max_memory_mb`` since the query started it interrupts the
   cursor (``sql_timeout`` / ``sql_memory_limit``). DuckDB's ``memory_limit`` is global and
   does not cover vectors' string heaps, so the process RSS is what is watched; operator
   queries run one at a time (:data:`_ONE_AT_A_TIME`) so that the growth is theirs.
   Rows are fetched in small chunks and made JSON-safe as they come; more than
   ``max_rows`` rows is ``sql_row_limit``, more than ``max_result_bytes`` is
   ``sql_result_limit``.

Failure modes: an interrupt lands between DuckDB vectors (2048 rows), so the overshoot is
one vector's work. Measured with the defaults (10 s, 512 MB), 2 cores: a 10 s cross join
ends after 10.01 s; ``string_agg`` of 10 kB strings over 10M rows ends at +774 MB RSS in
0.65 s, ``list()`` of them at +527 MB in 0.84 s, recursive ``s || s`` doubling at +702 MB
in 1.16 s (before: 13.7 s and 6.4 GB for the reported reproduction, which the guard now
refuses at once). The guard bounds the functions that amplify in one call; a 1 MB value
built by chaining ``||`` through CTEs and then copied per row still costs one vector
(+1.95 GB, 3.05 s) before the interrupt lands, and bigger chained values proportionally
more: only a separate process could bound that (DuckDB allows one process per file).
Another query's memory growth in the same process (the projector catching up, other
reads) counts against the running query. A DuckDB parse or
execution error is :class:`SqlError` with DuckDB's message; a query waiting more than
``time_limit_s`` for another operator query is ``sql_timeout`` (``details.busy``).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time as clock
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import duckdb
import psutil

from events.errors import ThreadlogError
from projections.queries.sql_guard import SqlError, SqlForbidden, check

__all__ = ["SqlError", "SqlForbidden", "SqlLimitExceeded", "SqlLimits", "SqlMemoryLimit",
           "SqlResultTooLarge", "SqlTimeout", "check_read_only", "json_safe", "run_sql"]

WATCH_INTERVAL_S = 0.01
FETCH_CHUNK = 64
_ONE_AT_A_TIME = threading.Lock()
"""Operator SQL runs one query at a time per process (the memory watch is per process)."""


class SqlLimitExceeded(ThreadlogError):
    code = "sql_row_limit"


class SqlResultTooLarge(ThreadlogError):
    code = "sql_result_limit"


class SqlMemoryLimit(ThreadlogError):
    code = "sql_memory_limit"


class SqlTimeout(ThreadlogError):
    code = "sql_timeout"


@dataclass(frozen=True)
class SqlLimits:
    max_rows: int = 10_000
    time_limit_s: float = 10.0
    max_memory_mb: int = 512
    """Growth of the process's resident memory allowed while the query runs."""
    max_result_bytes: int = 32 << 20
    """Approximate size of the rows returned (strings by length, other values 8 bytes)."""


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> list[str]:
    """The statements of ``sql`` if every one is a proven reader; SqlForbidden / SqlError
    if not (see :mod:`projections.queries.sql_guard`)."""
    return check(con, sql)


class _Watch:
    """Interrupts ``cur`` past the time limit or the memory growth bound."""

    def __init__(self, cur: duckdb.DuckDBPyConnection, limits: SqlLimits) -> None:
        self.cur = cur
        self.limits = limits
        self.reason: str | None = None
        self.peak_growth = 0
        self._proc = psutil.Process()
        self._base = self._proc.memory_info().rss
        self._start = clock.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sql-watch", daemon=True)

    def __enter__(self) -> _Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        bound = self.limits.max_memory_mb << 20
        while not self._done.wait(WATCH_INTERVAL_S):
            growth = self._proc.memory_info().rss - self._base
            self.peak_growth = max(self.peak_growth, growth)
            if clock.monotonic() - self._start > self.limits.time_limit_s:
                self.reason = "time"
            elif growth > bound:
                self.reason = "memory"
            if self.reason:
                self.cur.interrupt()
                return

    def check(self) -> None:
        """Raise the limit error if the watch fired."""
        if self.reason == "time":
            raise SqlTimeout(f"query interrupted after the {self.limits.time_limit_s:g}s "
                             f"time limit", details={"time_limit_s": self.limits.time_limit_s})
        if self.reason == "memory":
            raise SqlMemoryLimit(
                f"query interrupted: memory grew by more than {self.limits.max_memory_mb} MB",
                details={"max_memory_mb": self.limits.max_memory_mb,
                         "growth_mb": self.peak_growth >> 20})


def run_sql(con: duckdb.DuckDBPyConnection, sql: str, limits: SqlLimits,
            max_rows: int | None = None) -> dict[str, Any]:
    """Run read-only ``sql`` on a fresh cursor of ``con``; the last statement's rows.

    Returns ``{"columns": [...], "types": [...], "rows": [[...]], "row_count": n}`` with
    values made JSON-safe (dates as ISO strings, decimals and huge integers as strings).
    """
    statements = check_read_only(con, sql)
    limit = min(max_rows or limits.max_rows, limits.max_rows)
    if not _ONE_AT_A_TIME.acquire(timeout=limits.time_limit_s):
        raise SqlTimeout("another SQL query is still running; try again",
                         details={"busy": True, "time_limit_s": limits.time_limit_s})
    cur = con.cursor()
    try:
        cur.execute("BEGIN TRANSACTION READ ONLY")
        with _Watch(cur, limits) as watch:
            try:
                return _execute(cur, statements, limit, limits)
            except duckdb.Error as exc:
                watch.check()
                if isinstance(exc, duckdb.OutOfMemoryException):
                    raise SqlMemoryLimit(str(exc), details={
                        "max_memory_mb": limits.max_memory_mb}) from None
                if "read-only mode" in str(exc):
                    raise SqlForbidden(f"read-only SQL tried to write: {exc}",
                                       details={"sql": sql[:2000]}) from None
                raise SqlError(str(exc), details={"sql": sql[:2000]}) from None
    finally:
        with contextlib.suppress(duckdb.Error):  # already ended: close() ends it too
            cur.execute("ROLLBACK")
        cur.close()
        _ONE_AT_A_TIME.release()


def _execute(cur: duckdb.DuckDBPyConnection, statements: list[str], limit: int,
             limits: SqlLimits) -> dict[str, Any]:
    for stmt in statements:
        cur.execute(stmt)
    columns = [d[0] for d in cur.description or []]
    types = [str(d[1]) for d in cur.description or []]
    rows: list[list[Any]] = []
    size = 0
    while chunk := cur.fetchmany(FETCH_CHUNK):
        for r in chunk:
            if len(rows) == limit:
                raise SqlLimitExceeded(f"query returned more than {limit} rows; add a LIMIT",
                                       details={"max_rows": limit})
            row = [json_safe(v) for v in r]
            size += _size(row)
            if size > limits.max_result_bytes:
                raise SqlResultTooLarge(
                    f"query result is larger than {limits.max_result_bytes:,} bytes; "
                    f"select fewer or shorter values", details={
                        "max_result_bytes": limits.max_result_bytes})
            rows.append(row)
    return {"columns": columns, "types": types, "rows": rows, "row_count": len(rows)}


def _size(v: Any) -> int:
    if isinstance(v, str):
        return len(v)
    if isinstance(v, list):
        return 8 + sum(_size(x) for x in v)
    if isinstance(v, dict):
        return 8 + sum(len(k) + _size(x) for k, x in v.items())
    return 8


def json_safe(v: Any) -> Any:
    """A value JSON can carry without loss of meaning."""
    if v is None or isinstance(v, bool | str):
        return v
    if isinstance(v, int):
        return v if abs(v) < 2**53 else str(v)
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, datetime | date | time):
        return v.isoformat()
    if isinstance(v, Decimal | UUID | timedelta):
        return str(v)
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, list | tuple):
        return [json_safe(x) for x in v]
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    return str(v)
