"""The ``messages`` view: one row per message, updated by status changes and finalization.

``text`` is the concatenated text parts; ``content`` the parts as JSON; ``is_tool`` is true
for tool messages and for messages holding tool calls or results. Deleting a thread
removes its messages. Token columns come from the message's ``usage`` (NULL when none).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import duckdb

from projections.tables import KeyedRows, Table
from projections.view import Envelope, View

TOKEN_KINDS = ("prompt_tokens", "completion_tokens", "total_tokens", "reasoning_tokens",
               "cached_input_tokens", "cache_write_tokens")

MESSAGES = Table(
    "messages",
    {
        "message_id": "VARCHAR", "thread_id": "VARCHAR", "user_id": "VARCHAR",
        "order": "INTEGER", "step_order": "INTEGER", "role": "VARCHAR", "status": "VARCHAR",
        "text": "VARCHAR", "content": "JSON", "is_tool": "BOOLEAN", "agent_name": "VARCHAR",
        "model": "VARCHAR", "provider": "VARCHAR",
        **{k: "BIGINT" for k in TOKEN_KINDS},
        "finish_reason": "VARCHAR", "error": "VARCHAR", "prompt_message_id": "VARCHAR",
        "created_at": "TIMESTAMPTZ", "updated_at": "TIMESTAMPTZ", "seq": "BIGINT",
    },
    key=("message_id",),
    indexes=(("thread_id",),),
)
_PATCHABLE = ("status", "text", "content", "is_tool", "model", "provider", *TOKEN_KINDS,
              "finish_reason", "error", "updated_at")


def content_fields(parts: list[dict[str, Any]], role: str | None) -> dict[str, Any]:
    """``text``, ``content`` (JSON text) and ``is_tool`` of a list of content parts."""
    text = "".join(p.get("text", "") for p in parts if p.get("type") == "text")
    is_tool = role == "tool" or any(p.get("type") != "text" for p in parts)
    return {"text": text, "content": json.dumps(parts), "is_tool": is_tool}


def usage_fields(usage: dict[str, Any] | None) -> dict[str, Any]:
    if not usage:
        return {}
    return {k: usage.get(k, 0) for k in TOKEN_KINDS}


class MessagesBatch:
    def __init__(self) -> None:
        self.rows = KeyedRows(MESSAGES, _PATCHABLE, group_column="thread_id")

    def add(self, seq: int, env: Envelope) -> None:
        d = env["data"]
        t = env["type"]
        if t == "message_saved":
            mid = d["message_id"]
            row = {
                "message_id": mid, "thread_id": d["thread_id"], "user_id": env.get("user_id"),
                "order": d["order"], "step_order": d.get("step_order", 0), "role": d["role"],
                "status": d.get("status", "success"), "agent_name": d.get("agent_name"),
                "model": d.get("model"), "provider": d.get("provider"),
                "finish_reason": d.get("finish_reason"), "error": d.get("error"),
                "prompt_message_id": d.get("prompt_message_id"),
                "created_at": env["occurred_at"], "updated_at": env["occurred_at"], "seq": seq,
            }
            row.update(content_fields(d.get("content") or [], d["role"]))
            row.update(usage_fields(d.get("usage")))
            self.rows.insert(mid, row)
        elif t == "message_status_changed":
            self.rows.patch(d["message_id"], {
                "message_id": d["message_id"], "thread_id": d["thread_id"],
                "status": d["status"], "error": d.get("error"),
                "updated_at": env["occurred_at"],
            })
        elif t == "message_finalized":
            fields: dict[str, Any] = {
                "message_id": d["message_id"], "thread_id": d["thread_id"],
                "status": d["status"], "finish_reason": d.get("finish_reason"),
                "error": d.get("error"), "model": d.get("model"), "provider": d.get("provider"),
                "updated_at": env["occurred_at"],
            }
            parts = d.get("content") or []
            if parts:
                role = "tool" if all(p.get("type") == "tool_result" for p in parts) else None
                fields.update(content_fields(parts, role))
            fields.update(usage_fields(d.get("usage")))
            self.rows.patch(d["message_id"], fields)
        elif t == "thread_deleted":
            self.rows.delete_group(d["thread_id"])

    def flush(self, con: duckdb.DuckDBPyConnection, *, replace: bool = False) -> None:
        self.rows.flush(con, replace=replace)


class MessagesView(View):
    name: ClassVar[str] = "messages"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[Table, ...]] = (MESSAGES,)
    handles: ClassVar[frozenset[str]] = frozenset(
        {"message_saved", "message_status_changed", "message_finalized", "thread_deleted"})

    def new_batch(self) -> MessagesBatch:
        return MessagesBatch()
