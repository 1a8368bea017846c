"""The ``message_embeddings`` view: one vector per message, for vector search.

``message_embedded`` inserts the message's vector (``FLOAT[]``: half the memory of
``DOUBLE[]``, ample precision for cosine similarity), replacing an earlier one of the same
message (a re-embedding, possibly by another model). A row is keyed by ``(thread_id,
message_id)`` like the ``messages`` row it belongs to (message ids are unique only within
a thread). Deleting a thread removes its rows.
The vectors are compared by ``projections.queries.reads.messages_search`` with DuckDB's
built-in ``list_cosine_similarity`` (no vss extension): only rows of the query's
``model`` and dimensions, joined with ``messages`` (on thread and id) for ownership,
status and order.
"""

from __future__ import annotations

from typing import ClassVar

import duckdb

from projections.batch import Batch, Fields, delete_threads, latest_only
from projections.tables import Table
from projections.view import SqlView

MESSAGE_EMBEDDINGS = Table(
    "message_embeddings",
    {
        "message_id": "VARCHAR", "thread_id": "VARCHAR", "user_id": "VARCHAR",
        "model": "VARCHAR", "dimensions": "INTEGER", "vector": "FLOAT[]", "seq": "BIGINT",
    },
    key=("thread_id", "message_id"),
    indexes=(("thread_id",),),
)
F = Fields(message_id="$.data.message_id", thread_id="$.data.thread_id", user_id="$.user_id",
           model="$.data.model", dimensions="$.data.dimensions")
assert (F["message_id"], F["thread_id"]) == (f"{F.alias}[1]", f"{F.alias}[2]")
_EMBEDDED = ", ".join([
    F["message_id"], F["thread_id"], F["user_id"], F["model"],
    F.cast("dimensions", "INTEGER"),
    "CAST(json_extract(payload, '$.data.vector') AS FLOAT[])", "seq",
])


class MessageEmbeddingsView(SqlView):
    name: ClassVar[str] = "message_embeddings"
    version: ClassVar[int] = 2
    """2: keyed by (thread_id, message_id), no longer by message_id alone."""
    tables: ClassVar[tuple[Table, ...]] = (MESSAGE_EMBEDDINGS,)
    handles: ClassVar[frozenset[str]] = frozenset({"message_embedded", "thread_deleted"})

    def apply(self, con: duckdb.DuckDBPyConnection, batch: Batch, *,
              replace: bool = False) -> None:
        deleted = batch.deleted_threads(con)
        delete_threads(con, "message_embeddings", deleted)
        src = batch.source  # the projector dropped content preceding a deletion
        if batch.has("message_embedded"):
            dedupe = latest_only(f"{F['thread_id']}, {F['message_id']}", replace)
            con.execute(f"""{MESSAGE_EMBEDDINGS.insert_verb(replace)}
                SELECT {_EMBEDDED}
                FROM (SELECT seq, payload, {F.extract()} FROM {src}
                      WHERE type = 'message_embedded')
                WHERE list_count({F.alias}[1:2]) = 2 {dedupe}
            """)
