"""The ``tool_calls`` view: one row per tool call (key: thread, tool_call_id).

``status`` follows the calls's events: ``requested`` -> ``awaiting_approval`` ->
``approved`` / ``rejected`` -> ``completed`` / ``failed`` (whichever came last). Any of
these events creates the row if it is the first one seen. Deleting a thread removes them.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import duckdb

from projections.tables import KeyedRows, Table
from projections.view import Envelope, View

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
_PATCHABLE = tuple(c for c in TOOL_CALLS.columns if c not in ("thread_id", "tool_call_id",
                                                                "requested_at", "seq"))
_STATUS = {
    "tool_call_requested": "requested",
    "tool_approval_requested": "awaiting_approval",
    "tool_call_completed": "completed",
    "tool_call_failed": "failed",
}


class ToolCallsBatch:
    def __init__(self) -> None:
        self.rows = KeyedRows(TOOL_CALLS, _PATCHABLE, group_column="thread_id",
                              upsert_patches=True)

    def add(self, seq: int, env: Envelope) -> None:
        d = env["data"]
        t = env["type"]
        if t == "thread_deleted":
            self.rows.delete_group(d["thread_id"])
            return
        fields: dict[str, Any] = {
            "thread_id": d["thread_id"], "tool_call_id": d["tool_call_id"],
            "message_id": d.get("message_id"), "user_id": env.get("user_id"),
            "tool_name": d.get("tool_name"), "updated_at": env["occurred_at"],
            "requested_at": env["occurred_at"], "seq": seq,
        }
        if t == "tool_approval_decided":
            fields.update(status="approved" if d["approved"] else "rejected",
                          approved=d["approved"], decided_by=d.get("decided_by"),
                          reason=d.get("reason"))
        else:
            fields["status"] = _STATUS[t]
        if t in ("tool_call_requested", "tool_approval_requested"):
            fields["args"] = json.dumps(d.get("args") or {})
        if t == "tool_approval_requested":
            fields["needs_approval"] = True
        if t == "tool_call_completed":
            fields["result"] = json.dumps(d.get("result"))
        if t == "tool_call_failed":
            fields["error"] = d["error"]
        key = (d["thread_id"], d["tool_call_id"])
        if key in self.rows.new or key in self.rows.patches:
            fields.pop("requested_at")
            fields.pop("seq")
        self.rows.patch(key, fields)

    def flush(self, con: duckdb.DuckDBPyConnection, *, replace: bool = False) -> None:
        self.rows.flush(con, replace=replace)


class ToolCallsView(View):
    name: ClassVar[str] = "tool_calls"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[Table, ...]] = (TOOL_CALLS,)
    handles: ClassVar[frozenset[str]] = frozenset({*_STATUS, "tool_approval_decided",
                                                   "thread_deleted"})

    def new_batch(self) -> ToolCallsBatch:
        return ToolCallsBatch()
