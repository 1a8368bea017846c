"""The typed reads behind the query subjects: plain functions over a DuckDB cursor.

Every read takes the requesting ``user_id`` and returns only that user's rows. A thread
of another user is :class:`Forbidden`, an unknown one :class:`NotFound` (never an empty
result). Pagination cursors are opaque strings; a page holds at most ``limit`` rows and
``next_cursor`` is ``None`` on the last page. Each row is returned exactly once across
pages, in order, even if rows are added meanwhile (keyset pagination on unique keys).
"""

from __future__ import annotations

import base64
import json
import re
from datetime import date, datetime
from typing import Any

import duckdb

from events.errors import Forbidden, NotFound, ValidationFailed
from projections.queries.fusion import reciprocal_rank_fusion
from projections.queries.models import (
    MessagesGet,
    MessagesList,
    MessagesSearch,
    ThreadsGet,
    ThreadsList,
    UsageSummary,
)
from projections.views.messages import TOKEN_KINDS

Row = dict[str, Any]
_JSON_COLUMNS = {"metadata", "content", "args", "result"}


def _records(cur: duckdb.DuckDBPyConnection) -> list[Row]:
    names = [d[0] for d in cur.description or []]
    out = []
    for values in cur.fetchall():
        row = {}
        for n, v in zip(names, values, strict=True):
            if n in _JSON_COLUMNS and isinstance(v, str):
                v = json.loads(v)
            elif isinstance(v, datetime | date):
                v = v.isoformat()
            row[n] = v
        out.append(row)
    return out


def encode_cursor(*key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def decode_cursor(cursor: str, size: int) -> list[Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if isinstance(key, list) and len(key) == size:
            return key
    except ValueError:
        pass
    raise ValidationFailed("invalid cursor: pass next_cursor from the previous page",
                           details={"errors": [{"loc": ["cursor"], "msg": "invalid cursor",
                                                "type": "value_error"}]})


_THREAD_COLS = ("thread_id, user_id, title, summary, status, metadata, deleted, created_at, "
                "updated_at, created_seq, updated_seq")


def owned_thread(cur: duckdb.DuckDBPyConnection, user_id: str, thread_id: str) -> Row:
    """The thread row if ``user_id`` owns it; NotFound / Forbidden otherwise."""
    cur.execute(f"SELECT {_THREAD_COLS} FROM threads WHERE thread_id = ?", [thread_id])
    rows = _records(cur)
    if not rows:
        raise NotFound(f"thread {thread_id!r} not found", details={"thread_id": thread_id})
    if rows[0]["user_id"] != user_id:
        raise Forbidden(f"thread {thread_id!r} belongs to another user",
                        details={"thread_id": thread_id})
    return rows[0]


def threads_list(cur: duckdb.DuckDBPyConnection, q: ThreadsList) -> Row:
    """The user's threads by creation (stream order), ascending or descending."""
    op, direction = (">", "ASC") if q.order == "asc" else ("<", "DESC")
    where, params = "user_id = ?", list[Any]([q.user_id])
    if q.cursor is not None:
        (after,) = decode_cursor(q.cursor, 1)
        where += f" AND created_seq {op} ?"
        params.append(int(after))
    cur.execute(f"SELECT {_THREAD_COLS} FROM threads WHERE {where} "
                f"ORDER BY created_seq {direction} LIMIT {q.limit + 1}", params)
    items = _records(cur)
    more = len(items) > q.limit
    items = items[:q.limit]
    return {"items": items,
            "next_cursor": encode_cursor(items[-1]["created_seq"]) if more else None}


def thread_get(cur: duckdb.DuckDBPyConnection, q: ThreadsGet) -> Row:
    return owned_thread(cur, q.user_id, q.thread_id)


_MESSAGE_COLS = ('message_id, thread_id, "order", step_order, role, status, text, content, '
                 "is_tool, agent_name, model, provider, " + ", ".join(TOKEN_KINDS) +
                 ", finish_reason, error, error_code, cost, prompt_message_id, created_at, "
                 "updated_at, seq")


def messages_list(cur: duckdb.DuckDBPyConnection, q: MessagesList) -> Row:
    """A thread's messages, newest first: (order, step_order, seq) descending."""
    owned_thread(cur, q.user_id, q.thread_id)
    where, params = ["thread_id = ?"], list[Any]([q.thread_id])
    if q.exclude_tool_messages:
        where.append("NOT is_tool")
    if q.statuses:
        where.append("status IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(q.statuses))
    if q.cursor is not None:
        o, s, seq = decode_cursor(q.cursor, 3)
        where.append('("order", step_order, seq) < (?, ?, ?)')
        params += [int(o), int(s), int(seq)]
    cur.execute(f"SELECT {_MESSAGE_COLS} FROM messages WHERE {' AND '.join(where)} "
                f'ORDER BY "order" DESC, step_order DESC, seq DESC LIMIT {q.limit + 1}', params)
    items = _records(cur)
    more = len(items) > q.limit
    items = items[:q.limit]
    last = items[-1] if items else None
    return {"items": items,
            "next_cursor": encode_cursor(last["order"], last["step_order"], last["seq"])
            if more and last else None}


def messages_get(cur: duckdb.DuckDBPyConnection, q: MessagesGet) -> Row:
    """Messages by id, in the order asked. Message ids are unique only within a thread:
    an id names the user's messages of that id (one per thread holding it, in save
    order); rows of the same id in other users' threads are never returned. An id only
    another user's thread holds is Forbidden; any unknown id is NotFound
    (``details.missing`` lists them)."""
    ids = list(dict.fromkeys(q.message_ids))
    marks = ", ".join("?" * len(ids))  # an IN list of parameters uses the key index
    cur.execute(f"SELECT {_MESSAGE_COLS}, user_id AS _owner FROM messages "
                f"WHERE message_id IN ({marks}) ORDER BY seq", ids)
    rows = _records(cur)
    threads = sorted({r["thread_id"] for r in rows})
    if threads:
        marks = ", ".join("?" * len(threads))
        owners = dict(cur.execute(f"SELECT thread_id, user_id FROM threads "
                                  f"WHERE thread_id IN ({marks})", threads).fetchall())
        for r in rows:
            r["_owner"] = owners.get(r["thread_id"], r["_owner"])
    mine: dict[str, list[Row]] = {}
    held = set()
    for r in rows:
        held.add(r["message_id"])
        if r["_owner"] == q.user_id:
            mine.setdefault(r["message_id"], []).append(r)
        del r["_owner"]
    foreign = [i for i in ids if i in held and i not in mine]
    if foreign:
        raise Forbidden("messages belong to another user's thread",
                        details={"message_ids": foreign})
    missing = [i for i in ids if i not in held]
    if missing:
        raise NotFound(f"{len(missing)} message(s) not found", details={"missing": missing})
    return {"items": [r for i in ids for r in mine[i]]}


def usage_summary(cur: duckdb.DuckDBPyConnection, q: UsageSummary) -> Row:
    """Totals per billing period and model for the user (one period or all)."""
    where, params = "user_id = ?", [q.user_id]
    if q.period is not None:
        where += " AND billing_period = CAST(? AS DATE)"
        params.append(q.period + "-01")
    sums = ", ".join(f"sum({k})::BIGINT AS {k}" for k in TOKEN_KINDS)
    cur.execute(f"SELECT billing_period, model, provider, count(*) AS calls, {sums}, "
                f"sum(cost) AS cost FROM usage WHERE {where} "
                f"GROUP BY ALL ORDER BY billing_period, model, provider", params)
    rows = _records(cur)
    totals: Row = {"calls": sum(r["calls"] for r in rows),
                   "cost": sum(r["cost"] or 0.0 for r in rows)}
    for k in TOKEN_KINDS:
        totals[k] = sum(r[k] or 0 for r in rows)
    return {"user_id": q.user_id, "period": q.period, "totals": totals, "by_model": rows}


_WORD = re.compile(r"[\w']{3,}")


def messages_search(cur: duckdb.DuckDBPyConnection, q: MessagesSearch) -> Row:
    """Text hits (ranked by the number of the query's words they contain, 3+ letters, case
    insensitive) and vector hits (ranked by cosine similarity with ``q.vector`` among the
    messages embedded by ``q.model``), each the best ``limit``, newest first among equals;
    merged by reciprocal rank fusion (:mod:`projections.queries.fusion`, ``q.rrf_k``) into
    the best ``limit``; each hit widened by its thread's neighbours within
    ``before``/``after`` orders. ``items`` are the widened messages in thread order, each
    with ``found_by`` (the searches that found it; empty for a neighbour); ``hits`` the
    fused hit ids, best first; ``ranked`` the same with ``thread_id``, ``order``,
    ``score``, ``found_by``, ``text_rank``, ``vector_rank`` and ``similarity``. A hit is
    a message of a thread (``(thread_id, message_id)``: message ids are unique only
    within a thread), so with ``all_threads`` an id may be two hits. Both searches scan
    the user's (or the thread's) rows: DuckDB column scans, fine for thousands of
    messages per thread (no index: DuckDB's vss extension is not available here)."""
    if q.thread_id is not None:
        owned_thread(cur, q.user_id, q.thread_id)
    elif not q.all_threads:
        raise ValidationFailed("give thread_id, or all_threads=true",
                               details={"fields": ["thread_id", "all_threads"]})
    where, params = _search_scope(q)
    rankings: dict[str, list[str]] = {}
    similarity: dict[str, float] = {}
    if q.text is not None:
        rankings["text"] = [_hit_key(t, m) for t, m in _text_hits(cur, q, where, params)]
    if q.vector is not None:
        vector_hits = _vector_hits(cur, q, where, params)
        rankings["vector"] = [_hit_key(t, m) for t, m, _ in vector_hits]
        similarity = {_hit_key(t, m): sim for t, m, sim in vector_hits}
    fused = reciprocal_rank_fusion(rankings, k=q.rrf_k, limit=q.limit)
    if not fused:
        return {"items": [], "hits": [], "ranked": []}
    keys = [json.loads(f.id) for f in fused]
    pairs = " OR ".join("(thread_id = ? AND message_id = ?)" for _ in keys)
    cur.execute(f'SELECT thread_id, message_id, "order" FROM messages '
                f"WHERE user_id = ? AND ({pairs})",
                [q.user_id, *(v for key in keys for v in key)])
    where_is = {_hit_key(tid, mid): (tid, mid, order) for tid, mid, order in cur.fetchall()}
    fused = [f for f in fused if f.id in where_is]  # a thread deleted meanwhile
    if not fused:
        return {"items": [], "hits": [], "ranked": []}
    ranges = " OR ".join('(thread_id = ? AND "order" BETWEEN ? AND ?)' for _ in fused)
    rparams: list[Any] = []
    for f in fused:
        tid, _, order = where_is[f.id]
        rparams += [tid, order - q.before, order + q.after]
    cur.execute(f"SELECT {_MESSAGE_COLS} FROM messages WHERE user_id = ? AND status = "
                f"'success' AND ({ranges}) ORDER BY thread_id, \"order\", step_order, seq",
                [q.user_id, *rparams])
    found_by = {f.id: f.found_by for f in fused}
    items = _records(cur)
    for item in items:
        item["found_by"] = found_by.get(_hit_key(item["thread_id"], item["message_id"]), [])
    ranked = [{"message_id": where_is[f.id][1], "thread_id": where_is[f.id][0],
               "order": where_is[f.id][2], "score": f.score, "found_by": f.found_by,
               "text_rank": f.ranks.get("text"), "vector_rank": f.ranks.get("vector"),
               "similarity": similarity.get(f.id)} for f in fused]
    return {"items": items, "hits": [where_is[f.id][1] for f in fused], "ranked": ranked}


def _hit_key(thread_id: str, message_id: str) -> str:
    """A search hit's id for the fusion: its thread and message id (a message id alone
    is unique only within a thread)."""
    return json.dumps([thread_id, message_id])


def _search_scope(q: MessagesSearch, alias: str = "m") -> tuple[list[str], list[Any]]:
    """Conditions on ``messages`` (as ``alias``) shared by both searches."""
    where = [f"{alias}.user_id = ?", f"{alias}.status = 'success'"]
    params: list[Any] = [q.user_id]
    if q.thread_id is not None and not q.all_threads:
        where.append(f"{alias}.thread_id = ?")
        params.append(q.thread_id)
    if q.exclude_tool_messages:
        where.append(f"NOT {alias}.is_tool")
    if q.max_order is not None and q.thread_id is not None:
        where.append(f'NOT ({alias}.thread_id = ? AND {alias}."order" >= ?)')
        params += [q.thread_id, q.max_order]
    return where, params


def _text_hits(cur: duckdb.DuckDBPyConnection, q: MessagesSearch, where: list[str],
               params: list[Any]) -> list[tuple[str, str]]:
    """(thread id, message id) of the best text hits, best first."""
    words = sorted({w.lower() for w in _WORD.findall(q.text or "")})[:20]
    if not words:
        return []
    score = " + ".join("(contains(lower(m.text), ?))::INT" for _ in words)
    cur.execute(f"SELECT thread_id, message_id FROM (SELECT m.thread_id, m.message_id, "
                f"m.seq, {score} AS score "
                f"FROM messages m WHERE m.text IS NOT NULL AND {' AND '.join(where)}) "
                f"WHERE score > 0 ORDER BY score DESC, seq DESC LIMIT {q.limit}",
                [*words, *params])
    return [(str(t), str(m)) for t, m in cur.fetchall()]


def _vector_hits(cur: duckdb.DuckDBPyConnection, q: MessagesSearch, where: list[str],
                 params: list[Any]) -> list[tuple[str, str, float]]:
    """(thread id, message id, cosine similarity), best first. Vectors of another model, or of the
    same model with other dimensions, are never compared; if the model's vectors all have
    other dimensions, the query vector is invalid input."""
    vector = list(q.vector or [])
    # narrow the rows to compare before computing any similarity (the join with messages
    # then checks ownership, status and order)
    scope, scope_params = "user_id = ?", [q.user_id]
    if q.thread_id is not None and not q.all_threads:
        scope, scope_params = scope + " AND thread_id = ?", [*scope_params, q.thread_id]
    threshold = "" if q.vector_score_threshold is None else "AND e.sim >= ?"
    cur.execute(f"""SELECT m.thread_id, m.message_id, e.sim FROM (
            SELECT thread_id, message_id,
                   list_cosine_similarity(vector, ?::FLOAT[]) AS sim
            FROM message_embeddings WHERE model = ? AND dimensions = ? AND {scope}) e
        JOIN messages m ON m.thread_id = e.thread_id AND m.message_id = e.message_id
        WHERE {' AND '.join(where)} AND NOT isnan(e.sim) {threshold}
        ORDER BY e.sim DESC, m.seq DESC LIMIT {q.limit}""",
                [vector, q.model, len(vector), *scope_params, *params,
                 *([] if q.vector_score_threshold is None else [q.vector_score_threshold])])
    hits = [(str(tid), str(mid), float(sim)) for tid, mid, sim in cur.fetchall()]
    if not hits:
        _check_dimensions(cur, q, where, params)
    return hits


def _check_dimensions(cur: duckdb.DuckDBPyConnection, q: MessagesSearch, where: list[str],
                      params: list[Any]) -> None:
    cur.execute(f"""SELECT DISTINCT e.dimensions FROM message_embeddings e
        JOIN messages m ON m.thread_id = e.thread_id AND m.message_id = e.message_id
        WHERE e.model = ? AND {' AND '.join(where)} ORDER BY 1 LIMIT 5""",
                [q.model, *params])
    stored = [int(r[0]) for r in cur.fetchall()]
    if stored and len(q.vector or []) not in stored:
        raise ValidationFailed(
            f"vector has {len(q.vector or [])} dimensions; the messages embedded by "
            f"{q.model!r} have {', '.join(map(str, stored))}",
            details={"errors": [{"loc": ["vector"], "msg": "dimension mismatch",
                                 "type": "value_error"}],
                     "dimensions": len(q.vector or []), "stored_dimensions": stored})
