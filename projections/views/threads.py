"""The ``threads`` view: one row per live thread.

Deleting a thread removes its row (invariant 8: deletion is real). ``deleted`` is kept in
the schema for readers that filter on it and is always false for a stored row. A
``thread_deleted`` for a thread never seen (its creation purged from the log) is a no-op.
"""

from __future__ import annotations

import json
from typing import ClassVar

import duckdb

from projections.tables import KeyedRows, Table
from projections.view import Envelope, View

THREADS = Table(
    "threads",
    {
        "thread_id": "VARCHAR", "user_id": "VARCHAR", "title": "VARCHAR",
        "summary": "VARCHAR", "status": "VARCHAR", "metadata": "JSON",
        "deleted": "BOOLEAN", "created_at": "TIMESTAMPTZ", "updated_at": "TIMESTAMPTZ",
        "created_seq": "BIGINT", "updated_seq": "BIGINT",
    },
    key=("thread_id",),
    indexes=(("user_id",),),
)
_PATCHABLE = ("title", "summary", "status", "metadata", "updated_at", "updated_seq")


class ThreadsBatch:
    def __init__(self) -> None:
        self.rows = KeyedRows(THREADS, _PATCHABLE, group_column="thread_id")

    def add(self, seq: int, env: Envelope) -> None:
        d = env["data"]
        t = env["type"]
        tid = d["thread_id"]
        if t == "thread_created":
            self.rows.insert(tid, {
                "thread_id": tid, "user_id": d.get("user_id") or env.get("user_id"),
                "title": d.get("title"), "summary": d.get("summary"), "status": "active",
                "metadata": json.dumps(d.get("metadata") or {}), "deleted": False,
                "created_at": env["occurred_at"], "updated_at": env["occurred_at"],
                "created_seq": seq, "updated_seq": seq,
            })
        elif t == "thread_metadata_updated":
            meta = d.get("metadata")
            self.rows.patch(tid, {
                "thread_id": tid, "title": d.get("title"), "summary": d.get("summary"),
                "status": d.get("status"),
                "metadata": None if meta is None else json.dumps(meta),
                "updated_at": env["occurred_at"], "updated_seq": seq,
            })
        elif t == "thread_deleted":
            self.rows.delete_group(tid)

    def flush(self, con: duckdb.DuckDBPyConnection, *, replace: bool = False) -> None:
        self.rows.flush(con, replace=replace)


class ThreadsView(View):
    name: ClassVar[str] = "threads"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[Table, ...]] = (THREADS,)
    handles: ClassVar[frozenset[str]] = frozenset(
        {"thread_created", "thread_metadata_updated", "thread_deleted"})

    def new_batch(self) -> ThreadsBatch:
        return ThreadsBatch()
