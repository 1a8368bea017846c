"""The canvas views: ``canvas_state`` (one row per canvas: its current document and
version) and ``canvas_edits`` (one row per edit).

``canvas_state`` folds each edit's RFC 6902 ``ops`` into the stored document with
``jsonpatch`` (the same library the command side applies them with, so the document is
the log's replay). Per batch: one ``SELECT`` of the documents of the canvases the batch
edits and did not create, the ops applied in Python, one ``INSERT OR REPLACE`` of the
changed rows. ``flush`` recomputes from the batch's events each time it runs, so the
projector's retry of a batch gives the same rows.

Deleting a thread removes its canvases' rows from both tables (invariant 8).
"""

from __future__ import annotations

import copy
import json
from typing import Any, ClassVar

import duckdb
import jsonpatch

from projections.tables import KeyedRows, Table
from projections.view import Envelope, View

CANVAS_STATE = Table(
    "canvas_state",
    {
        "canvas_id": "VARCHAR", "thread_id": "VARCHAR", "user_id": "VARCHAR",
        "title": "VARCHAR", "document": "JSON", "version": "BIGINT",
        "element_count": "BIGINT", "created_at": "TIMESTAMPTZ", "updated_at": "TIMESTAMPTZ",
        "created_seq": "BIGINT", "updated_seq": "BIGINT",
    },
    key=("canvas_id",),
    indexes=(("thread_id",),),
)

CANVAS_EDITS = Table(
    "canvas_edits",
    {
        "canvas_id": "VARCHAR", "version": "BIGINT", "thread_id": "VARCHAR",
        "user_id": "VARCHAR", "base_version": "BIGINT", "touched": "JSON",
        "summary": "VARCHAR", "snippet": "JSON", "ops": "JSON", "author": "VARCHAR",
        "author_kind": "VARCHAR", "message_id": "VARCHAR", "reverts": "BIGINT",
        "occurred_at": "TIMESTAMPTZ", "seq": "BIGINT",
    },
    key=("canvas_id", "version"),
    indexes=(("thread_id",), ("canvas_id", "author")),
)


class CanvasStateBatch:
    def __init__(self) -> None:
        self.created: dict[str, dict[str, Any]] = {}
        self.edits: dict[str, list[tuple[int, Envelope]]] = {}
        self.deleted_threads: list[str] = []

    def add(self, seq: int, env: Envelope) -> None:
        d, t = env["data"], env["type"]
        if t == "canvas_created":
            self.created[d["canvas_id"]] = {
                "canvas_id": d["canvas_id"], "thread_id": d["thread_id"],
                "user_id": d.get("user_id"), "title": d.get("title"),
                "document": {"elements": {}, **(d.get("document") or {})}, "version": 0,
                "created_at": env["occurred_at"], "updated_at": env["occurred_at"],
                "created_seq": seq, "updated_seq": seq}
            self.edits.pop(d["canvas_id"], None)
        elif t == "canvas_edited":
            self.edits.setdefault(d["canvas_id"], []).append((seq, env))
        elif t == "thread_deleted":
            tid = d["thread_id"]
            for cid in [c for c, r in self.created.items() if r["thread_id"] == tid]:
                del self.created[cid]
            for cid in [c for c, e in self.edits.items() if e[0][1]["data"]["thread_id"] == tid]:
                del self.edits[cid]
            self.deleted_threads.append(tid)

    def flush(self, con: duckdb.DuckDBPyConnection, *, replace: bool = False) -> None:
        CANVAS_STATE.delete_where_in(con, "thread_id", self.deleted_threads)
        rows = {cid: {**row, "document": copy.deepcopy(row["document"])}
                for cid, row in self.created.items()}
        stored = [cid for cid in self.edits if cid not in rows]
        if stored:
            cols = list(CANVAS_STATE.columns)
            quoted = ", ".join(f'"{c}"' for c in cols)
            for rec in con.execute(
                    f"SELECT {quoted} FROM canvas_state WHERE canvas_id IN "
                    "(SELECT unnest($1::VARCHAR[]))", [stored]).fetchall():
                row = dict(zip(cols, rec, strict=True))
                row["document"] = json.loads(row["document"])
                for k in ("created_at", "updated_at"):
                    row[k] = row[k].isoformat() if row[k] is not None else None
                rows[row["canvas_id"]] = row
        for cid, edits in self.edits.items():
            target = rows.get(cid)
            if target is None:  # its creation was purged (thread deleted): nothing to fold
                continue
            for seq, env in edits:
                d = env["data"]
                if d["version"] <= target["version"]:
                    continue
                target["document"] = jsonpatch.apply_patch(target["document"], d["ops"],
                                                           in_place=True)
                target.update(version=d["version"], updated_at=env["occurred_at"],
                           updated_seq=seq)
        out = []
        for row in rows.values():
            out.append({**row, "document": json.dumps(row["document"]),
                        "element_count": len(row["document"].get("elements", {}))})
        CANVAS_STATE.insert(con, out, replace=True)


class CanvasStateView(View):
    name: ClassVar[str] = "canvas_state"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[Table, ...]] = (CANVAS_STATE,)
    handles: ClassVar[frozenset[str]] = frozenset(
        {"canvas_created", "canvas_edited", "thread_deleted"})

    def new_batch(self) -> CanvasStateBatch:
        return CanvasStateBatch()


class CanvasEditsBatch:
    def __init__(self) -> None:
        self.rows = KeyedRows(CANVAS_EDITS, (), group_column="thread_id")

    def add(self, seq: int, env: Envelope) -> None:
        d = env["data"]
        if env["type"] == "thread_deleted":
            self.rows.delete_group(d["thread_id"])
            return
        self.rows.insert((d["canvas_id"], d["version"]), {
            "canvas_id": d["canvas_id"], "version": d["version"], "thread_id": d["thread_id"],
            "user_id": env.get("user_id"), "base_version": d["base_version"],
            "touched": json.dumps(d.get("touched") or []), "summary": d.get("summary", ""),
            "snippet": json.dumps(d.get("snippet") or {}), "ops": json.dumps(d["ops"]),
            "author": d["author"], "author_kind": d.get("author_kind", "user"),
            "message_id": d.get("message_id"), "reverts": d.get("reverts"),
            "occurred_at": env["occurred_at"], "seq": seq})

    def flush(self, con: duckdb.DuckDBPyConnection, *, replace: bool = False) -> None:
        self.rows.flush(con, replace=replace)


class CanvasEditsView(View):
    name: ClassVar[str] = "canvas_edits"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[Table, ...]] = (CANVAS_EDITS,)
    handles: ClassVar[frozenset[str]] = frozenset({"canvas_edited", "thread_deleted"})

    def new_batch(self) -> CanvasEditsBatch:
        return CanvasEditsBatch()
