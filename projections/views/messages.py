"""The ``messages`` view: one row per message, updated by status changes and finalization.

``text`` is the concatenated text parts; ``content`` the parts as JSON; ``is_tool`` is true
for ``tool`` messages and for messages holding tool calls or results. Token columns come
from the message's ``usage`` (NULL when none). ``message_status_changed`` and
``message_finalized`` set the fields they carry (``null`` and an empty ``content`` mean
unchanged) on a message saved earlier (in this batch or before); for an unknown message
they are a no-op. Deleting a thread removes its messages. Saving an existing message id
again replaces the row.
"""

from __future__ import annotations

from typing import ClassVar

import duckdb

from projections.batch import Batch, Fields, delete_threads
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
    },
    key=("message_id",),
    indexes=(("thread_id",),),
)
F = Fields(
    message_id="$.data.message_id", thread_id="$.data.thread_id", user_id="$.user_id",
    order="$.data.order", step_order="$.data.step_order", role="$.data.role",
    status="$.data.status", agent_name="$.data.agent_name", model="$.data.model",
    provider="$.data.provider", finish_reason="$.data.finish_reason", error="$.data.error",
    prompt_message_id="$.data.prompt_message_id", at="$.occurred_at",
    **{k: f"$.data.usage.{k}" for k in TOKEN_KINDS},
)
_AT = F.cast("at", "TIMESTAMPTZ")
TEXT = "coalesce(array_to_string(json_extract_string(payload, '$.data.content[*].text'), ''), '')"
HAS_TOOL_PARTS = ("coalesce(list_has_any(json_extract_string(payload, '$.data.content[*].type'),"
                  " ['tool_call', 'tool_result']), false)")
_SAVED = ", ".join([
    F["message_id"], F["thread_id"], F["user_id"], F.cast("order", "INTEGER"),
    f"coalesce({F.cast('step_order', 'INTEGER')}, 0)", F["role"],
    f"coalesce({F['status']}, 'success')", TEXT,
    "coalesce(json_extract(payload, '$.data.content'), '[]')",
    f"{F['role']} = 'tool' OR {HAS_TOOL_PARTS}", F["agent_name"], F["model"], F["provider"],
    *(F.cast(k, "BIGINT") for k in TOKEN_KINDS), F["finish_reason"], F["error"],
    F["prompt_message_id"], _AT, _AT, "seq",
])


def _latest(name: str, expr: str | None = None, when: str | None = None) -> str:
    expr = expr or F[name]
    return f"arg_max({expr}, seq) FILTER (WHERE {when or expr + ' IS NOT NULL'}) AS {name}"


_PATCH = ", ".join([
    f"{F['message_id']} AS message_id", f"arg_max({F['status']}, seq) AS status",
    _latest("error"), _latest("text", "text", "has_content"),
    _latest("content", "content", "has_content"), _latest("is_tool", "is_tool", "has_content"),
    _latest("model"), _latest("provider"), _latest("finish_reason"),
    *(_latest(k, F.cast(k, "BIGINT")) for k in TOKEN_KINDS),
    f"arg_max({_AT}, seq) AS updated_at", "max(seq) AS last_seq",
])


class MessagesView(SqlView):
    name: ClassVar[str] = "messages"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[Table, ...]] = (MESSAGES,)
    handles: ClassVar[frozenset[str]] = frozenset(
        {"message_saved", "message_status_changed", "message_finalized", "thread_deleted"})

    def apply(self, con: duckdb.DuckDBPyConnection, batch: Batch, *,
              replace: bool = False) -> None:
        deleted = batch.deleted_threads(con)
        delete_threads(con, "messages", deleted)
        src, params = batch.after_deletions(deleted)
        if batch.has("message_saved"):
            dedupe = (f"QUALIFY row_number() OVER (PARTITION BY {F['message_id']} "
                      f"ORDER BY seq DESC) = 1" if replace else "")
            con.execute(f"""{MESSAGES.insert_verb(replace)}
                SELECT {_SAVED}
                FROM (SELECT seq, payload, {F.extract()} FROM {src}
                      WHERE type = 'message_saved')
                WHERE {F['message_id']} IS NOT NULL {dedupe}
            """, params)
        if batch.has("message_status_changed", "message_finalized"):
            tokens = ", ".join(f"{k} = coalesce(p.{k}, messages.{k})" for k in TOKEN_KINDS)
            con.execute(f"""UPDATE messages SET
                    status = p.status,
                    error = coalesce(p.error, messages.error),
                    text = coalesce(p.text, messages.text),
                    content = coalesce(p.content, messages.content),
                    is_tool = messages.role = 'tool' OR coalesce(p.is_tool, messages.is_tool),
                    model = coalesce(p.model, messages.model),
                    provider = coalesce(p.provider, messages.provider),
                    finish_reason = coalesce(p.finish_reason, messages.finish_reason),
                    {tokens}, updated_at = p.updated_at
                FROM (SELECT {_PATCH}
                      FROM (SELECT seq, {F.extract()}, {TEXT} AS text,
                                   json_extract(payload, '$.data.content') AS content,
                                   {HAS_TOOL_PARTS} AS is_tool,
                                   type = 'message_finalized' AND
                                   json_array_length(payload, '$.data.content') > 0
                                       AS has_content
                            FROM {src}
                            WHERE type IN ('message_status_changed', 'message_finalized'))
                      GROUP BY 1) p
                WHERE messages.message_id = p.message_id AND p.last_seq > messages.seq
            """, params)
