"""The ``messages`` view: one row per message, updated by status changes and finalization.

``text`` is the concatenated text parts; ``content`` the parts as JSON; ``is_tool`` is true
for ``tool`` messages and for messages holding tool calls or results. Token columns come
from the message's ``usage`` (NULL when none). ``error_code`` is the stable code of a
failed message's ``error`` (``rate_limited``, ``invalid_model_output``...; NULL for
events written before codes were stored). ``cost`` is the USD cost of the model call that
produced the message (``message_finalized.cost``; NULL for user and tool messages).
``message_status_changed`` and ``message_finalized`` set the fields they carry (``null``
and an empty ``content`` mean unchanged) on a message saved earlier (in this batch or
before); for an unknown message they are a no-op. Deleting a thread removes its
messages. Saving a message id again in the same thread replaces the row.

A row is keyed by ``(thread_id, message_id)``: clients choose message ids, unique only
within a thread, so the same id in two threads (of one user or of two) is two messages.
A save, a status change and a finalization only ever touch the row of their own thread
(issue 10: a user acts only as itself).
"""

from __future__ import annotations

from typing import ClassVar

import duckdb

from projections.batch import Batch, Fields, delete_threads, latest_only
from projections.tables import Table
from projections.view import SqlView

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
        "error_code": "VARCHAR", "cost": "DOUBLE",
    },
    key=("thread_id", "message_id"),
    indexes=(("thread_id",),),
)
F = Fields(
    message_id="$.data.message_id", thread_id="$.data.thread_id", user_id="$.user_id",
    order="$.data.order", step_order="$.data.step_order", role="$.data.role",
    status="$.data.status", agent_name="$.data.agent_name", model="$.data.model",
    provider="$.data.provider", finish_reason="$.data.finish_reason", error="$.data.error",
    prompt_message_id="$.data.prompt_message_id", at="$.occurred_at",
    content="$.data.content",
    **{k: f"$.data.usage.{k}" for k in TOKEN_KINDS},
    error_code="$.data.error_code", cost="$.data.cost",
)
"""One parse of the payload gives every field; ``content`` is the parts' JSON text (for an
array, ``json_extract_string`` returns its JSON)."""
_AT = F.cast("at", "TIMESTAMPTZ")
_PARTS = f"""json_transform({F['content']}, '[{{"type": "VARCHAR", "text": "VARCHAR"}}]')"""
"""The content parts' type and text (a second parse, of the content only)."""
TEXT = "coalesce(array_to_string(list_transform(parts, lambda p: p.text), ''), '')"
HAS_TOOL_PARTS = ("coalesce(list_has_any(list_transform(parts, lambda p: p.type), "
                  "['tool_call', 'tool_result']), false)")


def _events(src: str, where: str) -> str:
    """The events of ``src`` matching ``where`` with their fields ``f`` and ``parts``."""
    return (f"(SELECT seq, type, f, {_PARTS} AS parts FROM "
            f"(SELECT seq, type, {F.extract()} FROM {src} WHERE {where}))")


_SAVED = ", ".join(f"{expr} AS \"{col}\"" for expr, col in zip([
    F["message_id"], F["thread_id"], F["user_id"], F.cast("order", "INTEGER"),
    f"coalesce({F.cast('step_order', 'INTEGER')}, 0)", F["role"],
    f"coalesce({F['status']}, 'success')", TEXT, f"coalesce({F['content']}, '[]')",
    f"{F['role']} = 'tool' OR {HAS_TOOL_PARTS}", F["agent_name"], F["model"], F["provider"],
    *(F.cast(k, "BIGINT") for k in TOKEN_KINDS), F["finish_reason"], F["error"],
    F["prompt_message_id"], _AT, _AT, "seq", F["error_code"], F.cast("cost", "DOUBLE"),
], MESSAGES.columns, strict=True))


def _latest(name: str, expr: str | None = None, when: str | None = None) -> str:
    expr = expr or F[name]
    return f"arg_max({expr}, seq) FILTER (WHERE {when or expr + ' IS NOT NULL'}) AS {name}"


_HAS_CONTENT = "type = 'message_finalized' AND len(parts) > 0"
_PATCH = ", ".join([
    f"{F['thread_id']} AS thread_id", f"{F['message_id']} AS message_id",
    f"arg_max({F['status']}, seq) AS status",
    _latest("error"), _latest("error_code"), _latest("text", TEXT, _HAS_CONTENT),
    _latest("content", F["content"], _HAS_CONTENT),
    _latest("is_tool", HAS_TOOL_PARTS, _HAS_CONTENT),
    _latest("model"), _latest("provider"), _latest("finish_reason"),
    *(_latest(k, F.cast(k, "BIGINT")) for k in TOKEN_KINDS),
    _latest("cost", F.cast("cost", "DOUBLE")),
    f"arg_max({_AT}, seq) AS updated_at", "max(seq) AS last_seq",
])
_PATCHED = ("error", "error_code", "text", "content", "model", "provider", "finish_reason",
            *TOKEN_KINDS, "cost")
"""Columns a status change or finalization sets when it carries them (else unchanged)."""
_PATCHES = "_message_patches"
"""A temporary table of the batch's patches, one row per message (thread and id; dropped
at the end)."""
assert (F["message_id"], F["thread_id"]) == (f"{F.alias}[1]", f"{F.alias}[2]")
_HAS_KEY = f"list_count({F.alias}[1:2]) = 2"
"""A save with both key fields (message_id, thread_id not NULL), referring to ``f`` once:
the optimizer inlines the JSON extraction at each reference of ``f`` in a filter."""
_KEY = "{a}.thread_id = {b}.thread_id AND {a}.message_id = {b}.message_id"
"""The join of a patch with its message: the same thread and id."""


def _patched(row: str) -> dict[str, str]:
    """The columns of ``row`` (a stored or just-saved message) after the patch ``p``: the
    one fold used both for rows saved earlier (UPDATE) and rows saved in the same batch
    (INSERT), so a message's row does not depend on where batches were cut."""
    out = {c: f"coalesce(p.{c}, {row}.{c})" for c in _PATCHED}
    out["status"] = "p.status"
    out["is_tool"] = f"{row}.role = 'tool' OR coalesce(p.is_tool, {row}.is_tool)"
    out["updated_at"] = "p.updated_at"
    return out


class MessagesView(SqlView):
    name: ClassVar[str] = "messages"
    version: ClassVar[int] = 4
    """2: keyed by (thread_id, message_id), no longer by message_id alone. 3: the
    ``error_code`` column (a failed message's code beside its ``error`` text). 4: the
    ``cost`` column (USD of the step's model call, from ``message_finalized.cost``)."""
    lane: ClassVar[int] = 1
    tables: ClassVar[tuple[Table, ...]] = (MESSAGES,)
    handles: ClassVar[frozenset[str]] = frozenset(
        {"message_saved", "message_status_changed", "message_finalized", "thread_deleted"})

    def apply(self, con: duckdb.DuckDBPyConnection, batch: Batch, *,
              replace: bool = False) -> None:
        deleted = batch.deleted_threads(con)
        delete_threads(con, "messages", deleted)
        src = batch.source  # the projector dropped content preceding a deletion
        patched = batch.has("message_status_changed", "message_finalized")
        if patched:
            con.execute(f"""CREATE OR REPLACE TEMP TABLE {_PATCHES} AS
                SELECT {_PATCH} FROM {_events(src, "type IN ('message_status_changed', "
                                                   "'message_finalized')")}
                GROUP BY 1, 2""")
        # On an error the caller rolls back, which drops the temp table too (dropping it
        # here would fail in the aborted transaction and hide the error, e.g. the key
        # conflict that makes the projector re-apply with replace).
        if batch.has("message_saved"):
            self._insert(con, src, patched, replace)
        if patched:
            # Rows saved by this apply were folded above (their seq is above both the
            # view's floor and the batch's first - 1); rows saved earlier get the
            # patch here.
            sets = ", ".join(f'"{c}" = {e}' for c, e in _patched("messages").items())
            con.execute(f"""UPDATE messages SET {sets}
                FROM {_PATCHES} p
                WHERE {_KEY.format(a="messages", b="p")} AND p.last_seq > messages.seq
                  AND messages.seq <= {max(int(batch.floor), int(batch.first) - 1)}""")
            con.execute(f"DROP TABLE IF EXISTS {_PATCHES}")

    @staticmethod
    def _insert(con: duckdb.DuckDBPyConnection, src: str, patched: bool,
                replace: bool) -> None:
        dedupe = latest_only(f"{F['thread_id']}, {F['message_id']}", replace)
        events = _events(src, "type = 'message_saved'")
        saved = f"(SELECT {_SAVED} FROM {events} WHERE {_HAS_KEY} {dedupe})"
        if not patched:
            con.execute(f"{MESSAGES.insert_verb(replace)} SELECT * FROM {saved}")
            return
        fold = _patched("s")
        cols = ", ".join(f'CASE WHEN p.message_id IS NULL THEN s."{c}" ELSE {fold[c]} END'
                         if c in fold else f's."{c}"' for c in MESSAGES.columns)
        con.execute(f"""{MESSAGES.insert_verb(replace)}
            SELECT {cols} FROM {saved} s
            LEFT JOIN {_PATCHES} p ON {_KEY.format(a="p", b="s")} AND p.last_seq > s.seq
        """)
