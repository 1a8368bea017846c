"""Read-only analytical SQL over the views (``query.sql`` and ``threadlog sql``).

For operators: every view of every user is visible (later issues add permissions).

Read-only is enforced by parsing with DuckDB's own statement extraction
(``extract_statements``): every statement must be a SELECT (which covers WITH, FROM-first,
DESCRIBE, SHOW and SUMMARIZE) or an EXPLAIN; anything else (CREATE/ALTER/DROP, INSERT/
UPDATE/DELETE, ATTACH/DETACH, COPY/EXPORT, INSTALL/LOAD, PRAGMA, SET, CALL, CHECKPOINT,
VACUUM, transactions...) is :class:`SqlForbidden`, and so is a script mixing a reader
with any of them. As defence in depth the database is opened with external access
disabled, so table functions that read files (``read_csv``, ``read_parquet``, ``glob``...)
fail, and the statement runs on its own cursor.

Limits: at most ``max_rows`` rows are returned (more is :class:`SqlLimitExceeded`:
add a LIMIT), and a statement running longer than ``time_limit_s`` is interrupted
(:class:`SqlTimeout`). A DuckDB parse or execution error is :class:`SqlError` with
DuckDB's message.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import duckdb

from events.errors import ThreadlogError

ALLOWED = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})


class SqlError(ThreadlogError):
    """The SQL did not parse or failed to run; ``message`` is DuckDB's."""

    code = "sql_error"


class SqlForbidden(ThreadlogError):
    """The SQL is not read-only (or not a single kind of reader)."""

    code = "sql_forbidden"


class SqlLimitExceeded(ThreadlogError):
    code = "sql_row_limit"


class SqlTimeout(ThreadlogError):
    code = "sql_timeout"


@dataclass(frozen=True)
class SqlLimits:
    max_rows: int = 10_000
    time_limit_s: float = 10.0


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> list[str]:
    """The statements of ``sql`` if every one is a reader; SqlForbidden / SqlError if not."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise SqlError(str(exc), details={"sql": sql[:2000]}) from None
    if not statements:
        raise SqlError("no SQL statement given", details={"sql": sql[:2000]})
    bad = [s for s in statements if s.type not in ALLOWED]
    if bad:
        kinds = sorted({s.type.name for s in bad})
        raise SqlForbidden(
            f"only read-only statements (SELECT, WITH, EXPLAIN, DESCRIBE, SHOW) are allowed; "
            f"got {', '.join(kinds)}",
            details={"forbidden": kinds, "statements": [s.query.strip()[:200] for s in bad]})
    return [s.query for s in statements]


def run_sql(con: duckdb.DuckDBPyConnection, sql: str, limits: SqlLimits,
            max_rows: int | None = None) -> dict[str, Any]:
    """Run read-only ``sql`` on a fresh cursor of ``con``; the last statement's rows.

    Returns ``{"columns": [...], "types": [...], "rows": [[...]], "row_count": n}`` with
    values made JSON-safe (dates as ISO strings, decimals and huge integers as strings).
    """
    statements = check_read_only(con, sql)
    limit = min(max_rows or limits.max_rows, limits.max_rows)
    cur = con.cursor()
    timer = threading.Timer(limits.time_limit_s, cur.interrupt)
    timer.start()
    try:
        for stmt in statements[:-1]:
            cur.execute(stmt)
        cur.execute(statements[-1])
        columns = [d[0] for d in cur.description or []]
        types = [str(d[1]) for d in cur.description or []]
        rows = cur.fetchmany(limit + 1)
    except duckdb.InterruptException:
        raise SqlTimeout(f"query interrupted after the {limits.time_limit_s:g}s time limit",
                         details={"time_limit_s": limits.time_limit_s}) from None
    except duckdb.Error as exc:
        if not timer.is_alive() and "interrupt" in str(exc).lower():
            raise SqlTimeout(f"query interrupted after the {limits.time_limit_s:g}s time "
                             f"limit", details={"time_limit_s": limits.time_limit_s}) from None
        raise SqlError(str(exc), details={"sql": sql[:2000]}) from None
    finally:
        timer.cancel()
        cur.close()
    if len(rows) > limit:
        raise SqlLimitExceeded(f"query returned more than {limit} rows; add a LIMIT",
                               details={"max_rows": limit})
    return {"columns": columns, "types": types,
            "rows": [[json_safe(v) for v in r] for r in rows], "row_count": len(rows)}


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
