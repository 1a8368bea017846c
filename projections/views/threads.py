"""The ``threads`` view: one row per live thread.

Deleting a thread removes its row (invariant 8: deletion is real). ``deleted`` is kept in
the schema for readers that filter on it and is always false for a stored row. A
``thread_deleted`` for a thread never seen (its creation purged from the log) is a no-op.
``thread_metadata_updated`` sets the fields it carries (``null`` means unchanged).
"""

from __future__ import annotations

from typing import ClassVar

import duckdb

from projections.batch import Batch, Fields, delete_threads, latest_only
from projections.tables import Table
from projections.view import SqlView

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
F = Fields(thread_id="$.data.thread_id", user_id="$.data.user_id", env_user="$.user_id",
           title="$.data.title", summary="$.data.summary", status="$.data.status",
           at="$.occurred_at")
_AT = F.cast("at", "TIMESTAMPTZ")


def _latest(name: str) -> str:
    return f"arg_max({F[name]}, seq) FILTER (WHERE {F[name]} IS NOT NULL) AS {name}"


class ThreadsView(SqlView):
    name: ClassVar[str] = "threads"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[Table, ...]] = (THREADS,)
    handles: ClassVar[frozenset[str]] = frozenset(
        {"thread_created", "thread_metadata_updated", "thread_deleted"})

    def apply(self, con: duckdb.DuckDBPyConnection, batch: Batch, *,
              replace: bool = False) -> None:
        deleted = batch.deleted_threads(con)
        delete_threads(con, "threads", deleted)
        src = batch.source  # the projector dropped content preceding a deletion
        if batch.has("thread_created"):
            dedupe = latest_only(F['thread_id'], replace)
            con.execute(f"""{THREADS.insert_verb(replace)}
                SELECT {F['thread_id']}, coalesce({F['user_id']}, {F['env_user']}),
                       {F['title']}, {F['summary']}, 'active',
                       coalesce(json_extract(payload, '$.data.metadata'), '{{}}'), false,
                       {_AT}, {_AT}, seq, seq
                FROM (SELECT seq, payload, {F.extract()} FROM {src}
                      WHERE type = 'thread_created')
                WHERE {F['thread_id']} IS NOT NULL {dedupe}
            """)
        if batch.has("thread_metadata_updated"):
            con.execute(f"""UPDATE threads SET
                    title = coalesce(p.title, threads.title),
                    summary = coalesce(p.summary, threads.summary),
                    status = coalesce(p.status, threads.status),
                    metadata = coalesce(p.metadata, threads.metadata),
                    updated_at = p.updated_at, updated_seq = p.updated_seq
                FROM (SELECT {F['thread_id']} AS thread_id, {_latest('title')},
                        {_latest('summary')}, {_latest('status')},
                        arg_max(meta, seq) FILTER (WHERE json_type(meta) = 'OBJECT')
                            AS metadata,
                        arg_max({_AT}, seq) AS updated_at, max(seq) AS updated_seq
                      FROM (SELECT seq, json_extract(payload, '$.data.metadata') AS meta,
                                   {F.extract()}
                            FROM {src} WHERE type = 'thread_metadata_updated')
                      GROUP BY 1) p
                WHERE threads.thread_id = p.thread_id AND p.updated_seq > threads.created_seq
            """)
