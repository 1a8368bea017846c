"""The ``tool_calls`` view: one row per tool call (key: thread, tool_call_id).

``status`` is that of the call's latest event: ``requested``, ``awaiting_approval``,
``approved`` / ``rejected``, ``completed`` / ``failed``. Whichever event comes first
creates the row; later ones set the fields they carry. Deleting a thread removes them.
"""

from __future__ import annotations

from typing import ClassVar

import duckdb

from projections.batch import Batch, Fields, delete_threads
from projections.tables import Table
from projections.view import SqlView

TOOL_CALLS = Table(
    "tool_calls",
    {
        "thread_id": "VARCHAR", "tool_call_id": "VARCHAR", "message_id": "VARCHAR",
        "user_id": "VARCHAR", "tool_name": "VARCHAR", "args": "JSON", "status": "VARCHAR",
        "result": "JSON", "error": "VARCHAR", "needs_approval": "BOOLEAN",
        "approved": "BOOLEAN", "decided_by": "VARCHAR", "reason": "VARCHAR",
        "requested_at": "TIMESTAMPTZ", "updated_at": "TIMESTAMPTZ", "seq": "BIGINT",
    },
    key=("thread_id", "tool_call_id"),
)
F = Fields(thread_id="$.data.thread_id", tool_call_id="$.data.tool_call_id",
           message_id="$.data.message_id", user_id="$.user_id", tool_name="$.data.tool_name",
           error="$.data.error", approved="$.data.approved", decided_by="$.data.decided_by",
           reason="$.data.reason", at="$.occurred_at")
_AT = F.cast("at", "TIMESTAMPTZ")
_STATUS = f"""CASE type WHEN 'tool_call_requested' THEN 'requested'
    WHEN 'tool_approval_requested' THEN 'awaiting_approval'
    WHEN 'tool_call_completed' THEN 'completed' WHEN 'tool_call_failed' THEN 'failed'
    WHEN 'tool_approval_decided' THEN CASE WHEN {F.cast('approved', 'BOOLEAN')}
                                           THEN 'approved' ELSE 'rejected' END END"""
_REQUESTS = "type IN ('tool_call_requested', 'tool_approval_requested')"
_DECIDED = "type = 'tool_approval_decided'"
_KEEP = ("requested_at", "seq", "thread_id", "tool_call_id")


def _latest(expr: str, when: str | None = None) -> str:
    return f"arg_max({expr}, seq) FILTER (WHERE {when or expr + ' IS NOT NULL'})"


_ROW = ", ".join([
    F["thread_id"], F["tool_call_id"], _latest(F["message_id"]), _latest(F["user_id"]),
    _latest(F["tool_name"]), _latest("json_extract(payload, '$.data.args')", _REQUESTS),
    f"arg_max({_STATUS}, seq)",
    _latest("json_extract(payload, '$.data.result')", "type = 'tool_call_completed'"),
    _latest(F["error"], "type = 'tool_call_failed'"),
    "CASE WHEN bool_or(type = 'tool_approval_requested') THEN true END",
    _latest(F.cast("approved", "BOOLEAN"), _DECIDED),
    _latest(F["decided_by"], f"{_DECIDED} AND {F['decided_by']} IS NOT NULL"),
    _latest(F["reason"], f"{_DECIDED} AND {F['reason']} IS NOT NULL"),
    f"min({_AT})", f"max({_AT})", "min(seq)",
])


class ToolCallsView(SqlView):
    name: ClassVar[str] = "tool_calls"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[Table, ...]] = (TOOL_CALLS,)
    handles: ClassVar[frozenset[str]] = frozenset({
        "tool_call_requested", "tool_approval_requested", "tool_approval_decided",
        "tool_call_completed", "tool_call_failed", "thread_deleted"})

    def apply(self, con: duckdb.DuckDBPyConnection, batch: Batch, *,
              replace: bool = False) -> None:
        deleted = batch.deleted_threads(con)
        delete_threads(con, "tool_calls", deleted)
        if not batch.has(*(self.handles - {"thread_deleted"})):
            return
        src = batch.source  # the projector dropped content preceding a deletion
        sets = ", ".join(f'"{c}" = coalesce(excluded."{c}", tool_calls."{c}")'
                         for c in TOOL_CALLS.columns if c not in _KEEP)
        con.execute(f"""INSERT INTO tool_calls ({TOOL_CALLS.column_list})
            SELECT {_ROW}
            FROM (SELECT seq, type, payload, {F.extract()} FROM {src}
                  WHERE type <> 'thread_deleted')
            WHERE {F['thread_id']} IS NOT NULL AND {F['tool_call_id']} IS NOT NULL
            GROUP BY {F['thread_id']}, {F['tool_call_id']}
            ON CONFLICT (thread_id, tool_call_id) DO UPDATE SET {sets}
        """)
