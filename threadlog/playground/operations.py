"""What the playground page reads and does, each as NATS requests through the
:class:`~threadlog.playground.bridge.Bridge`.

Operators (``ops.sql`` over the views) list every user and search threads by title;
other roles see only the users their subjects allow (a user: itself) and search the
pages they may read. Everything else goes through the same per-user subjects a client
uses (``query.<u>.*``, ``cmd.<u>.*``, and ``ops.workflows.*`` for operators), so the
NATS server and the handlers decide what each credential may see.

Failure modes: every function returns a reply dict (``{ok, result|error}``); bad input
raises :class:`events.ThreadlogError` (``invalid_id`` / ``invalid_input``) before any
request is sent.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from events import new_id
from events.errors import ValidationFailed as InvalidInput
from events.ids import check_token
from threadlog.playground.bridge import Bridge

MAX_PAGE = 100
_SEARCH = re.compile(r"^[\w \-@.:,]{0,100}$")
_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def check_ids(*ids: str) -> None:
    """Each of ``ids`` is a safe subject token (else ``invalid_id``)."""
    for i in ids:
        check_token(i, what="id")


def search_text(value: str | None) -> str:
    """A search box's text, checked: letters, digits, spaces and ``-@.:,`` only (it is
    put into operators' SQL as a literal)."""
    text = (value or "").strip()
    if not _SEARCH.match(text):
        raise InvalidInput("search may hold letters, digits, spaces and - @ . : , only "
                           "(at most 100)", details={"field": "search"})
    return text


def page_limit(value: str | int | None, default: int = 50) -> int:
    try:
        n = int(value) if value is not None and value != "" else default
    except ValueError:
        raise InvalidInput("limit must be an integer", details={"field": "limit"}) from None
    if not 1 <= n <= MAX_PAGE:
        raise InvalidInput(f"limit must be 1..{MAX_PAGE}", details={"field": "limit"})
    return n


def _like(text: str) -> str:
    return "'%" + text.replace("'", "''") + "%'"


async def sql(bridge: Bridge, query: str, max_rows: int = MAX_PAGE + 1) -> dict[str, Any]:
    """``ops.sql`` as rows of dicts: ``{ok, result: {items: [...]}}``."""
    reply = await bridge.request("ops.sql", {"user_id": bridge.identity.name or "ops",
                                             "sql": query, "max_rows": max_rows})
    if not reply.get("ok"):
        return reply
    res = reply["result"]
    items = [dict(zip(res["columns"], row, strict=False)) for row in res["rows"]]
    return {"ok": True, "result": {"items": items}, "seq": reply.get("seq")}


async def users(bridge: Bridge, search: str | None, offset: int, limit: int) -> dict[str, Any]:
    """Users with threads (operators: all, by ``ops.sql``); other roles: themselves."""
    text = search_text(search)
    if not bridge.identity.is_operator:
        me = bridge.identity.name
        items = [{"user_id": me}] if bridge.identity.role == "user" and text in me else []
        return {"ok": True, "result": {"items": items, "next_offset": None}}
    where = f"WHERE user_id ILIKE {_like(text)}" if text else ""
    reply = await sql(bridge, "SELECT user_id, count(*) AS threads, "
                      "CAST(max(created_at) AS VARCHAR) AS last_thread_at FROM threads "
                      f"{where} GROUP BY user_id ORDER BY user_id "
                      f"LIMIT {limit + 1} OFFSET {int(offset)}")
    return _offset_page(reply, offset, limit)


def _offset_page(reply: dict[str, Any], offset: int, limit: int) -> dict[str, Any]:
    if not reply.get("ok"):
        return reply
    items = reply["result"]["items"]
    more = len(items) > limit
    return {"ok": True, "result": {"items": items[:limit],
                                   "next_offset": offset + limit if more else None}}


async def threads(bridge: Bridge, user_id: str, search: str | None, cursor: str | None,
                  limit: int) -> dict[str, Any]:
    """The user's threads, newest first. With a search: operators by SQL over the
    ``threads`` view (``cursor`` is an offset), others by filtering the pages they read."""
    check_token(user_id, what="user_id")
    text = search_text(search)
    if text and bridge.identity.is_operator:
        offset = int(cursor) if cursor and cursor.isdigit() else 0
        reply = await sql(bridge, "SELECT thread_id, user_id, title, summary, status, deleted, "
                          "CAST(created_at AS VARCHAR) AS created_at FROM threads "
                          f"WHERE user_id = '{user_id}' AND (title ILIKE {_like(text)} "
                          f"OR thread_id ILIKE {_like(text)}) ORDER BY created_seq DESC "
                          f"LIMIT {limit + 1} OFFSET {offset}")
        page = _offset_page(reply, offset, limit)
        if page.get("ok"):
            nxt = page["result"].pop("next_offset")
            page["result"]["next_cursor"] = str(nxt) if nxt is not None else None
        return page
    body: dict[str, Any] = {"user_id": user_id, "limit": limit if not text else MAX_PAGE}
    found: list[dict[str, Any]] = []
    for _ in range(10 if text else 1):  # a search reads at most 10 pages
        if cursor:
            body["cursor"] = cursor
        reply = await bridge.request(f"query.{user_id}.threads.list", body)
        if not reply.get("ok"):
            return reply
        res = reply["result"]
        found += [t for t in res["items"] if not text or
                  text.lower() in f"{t.get('title') or ''} {t['thread_id']}".lower()]
        cursor = res.get("next_cursor")
        if not cursor or len(found) >= limit:
            break
    return {"ok": True, "result": {"items": found[:limit], "next_cursor": cursor}}


async def messages(bridge: Bridge, user_id: str, thread_id: str, cursor: str | None,
                   limit: int, min_seq: int | None = None) -> dict[str, Any]:
    """A thread's messages, oldest first within the page (the query pages newest first:
    ``next_cursor`` goes further back). Each message carries its tool calls and results
    (content parts), status, error, tokens; operators also get the thread's tool calls
    (approval state). ``min_seq`` (a live event's or a reply's sequence) makes the read
    wait until the projection has applied it: the page reads what the event announced."""
    check_token(user_id, what="user_id")
    check_token(thread_id, what="thread_id")
    body: dict[str, Any] = {"user_id": user_id, "thread_id": thread_id, "limit": limit}
    if min_seq is not None:
        body["min_seq"] = min_seq
    if cursor:
        body["cursor"] = cursor
    reply = await bridge.request(f"query.{user_id}.messages.list", body)
    if not reply.get("ok"):
        return reply
    res = reply["result"]
    items = list(reversed(res["items"]))
    items = [_decoded(m) for m in items]
    out: dict[str, Any] = {"items": items, "next_cursor": res.get("next_cursor")}
    thread = await bridge.request(f"query.{user_id}.threads.get",
                                  {"user_id": user_id, "thread_id": thread_id})
    if thread.get("ok"):
        out["thread"] = thread["result"]
    if bridge.identity.is_operator:
        approvals = await sql(bridge, "SELECT tool_call_id, message_id, tool_name, status, "
                              "needs_approval, approved, decided_by, error FROM tool_calls "
                              f"WHERE thread_id = '{thread_id}' ORDER BY seq")
        if approvals.get("ok"):
            out["tool_calls"] = approvals["result"]["items"]
    return {"ok": True, "result": out, "seq": reply.get("seq")}


async def generate(bridge: Bridge, user_id: str, thread_id: str, agent: str, prompt: str,
                   deadline_s: float = 120.0) -> dict[str, Any]:
    """Run ``agent`` on ``prompt`` with ``stream: true`` (deltas reach the page on its
    live subscription); the reply once the generation ends or pauses for approval."""
    check_token(user_id, what="user_id")
    check_token(thread_id, what="thread_id")
    check_token(agent, what="agent")
    if not prompt.strip() or len(prompt) > 100_000:
        raise InvalidInput("prompt must be 1..100000 characters", details={"field": "prompt"})
    body = {"command_id": new_id(), "user_id": user_id, "agent": agent,
            "thread_id": thread_id, "prompt": prompt, "stream": True}
    return await bridge.request(f"cmd.{user_id}.agent.generate", body,
                                timeout=deadline_s + 5)


async def create_thread(bridge: Bridge, user_id: str, title: str | None) -> dict[str, Any]:
    check_token(user_id, what="user_id")
    body: dict[str, Any] = {"command_id": new_id(), "user_id": user_id}
    if title:
        body["title"] = title[:500]
    return await bridge.request(f"cmd.{user_id}.thread.create", body)


async def approval(bridge: Bridge, user_id: str, thread_id: str, tool_call_id: str,
                   approved: bool, reason: str | None) -> dict[str, Any]:
    """Approve or deny a paused tool call; the reply comes when the generation has
    resumed and finished (or paused again)."""
    check_token(user_id, what="user_id")
    check_token(thread_id, what="thread_id")
    body: dict[str, Any] = {"command_id": new_id(), "user_id": user_id,
                            "thread_id": thread_id, "tool_call_id": tool_call_id[:200],
                            "approved": bool(approved)}
    if reason:
        body["reason"] = reason[:1000]
    return await bridge.request(f"cmd.{user_id}.agent.approval", body, timeout=125)


async def canvases(bridge: Bridge, user_id: str, thread_id: str,
                   known: list[str]) -> dict[str, Any]:
    """The thread's canvases: ``{canvas_id, title, version, document, edits}`` each,
    edits newest first with summary, touched elements, author and snippet. Operators
    read the ``canvas_state`` / ``canvas_edits`` views (their role may not send
    ``cmd.*``); others ``cmd.<u>.canvas.get`` / ``history`` of the ids the page saw in
    the thread's tool calls (``known``)."""
    check_token(user_id, what="user_id")
    check_token(thread_id, what="thread_id")
    ids = [check_token(c, what="canvas_id") for c in known[:20]]
    if bridge.identity.is_operator:
        return await _canvases_by_sql(bridge, thread_id)
    items = []
    for cid in ids:
        doc = await bridge.request(f"cmd.{user_id}.canvas.get",
                                   {"user_id": user_id, "canvas_id": cid})
        if not doc.get("ok"):
            items.append({"canvas_id": cid, "error": doc.get("error")})
            continue
        hist = await bridge.request(f"cmd.{user_id}.canvas.history",
                                    {"user_id": user_id, "canvas_id": cid, "limit": 50})
        d = doc["result"]
        items.append({"canvas_id": cid, "title": d.get("title"), "version": d["version"],
                      "document": d["document"],
                      "edits": hist["result"]["edits"] if hist.get("ok") else [],
                      "error": None if hist.get("ok") else hist.get("error")})
    return {"ok": True, "result": {"items": items}}


async def _canvases_by_sql(bridge: Bridge, thread_id: str) -> dict[str, Any]:
    states = await sql(bridge, "SELECT canvas_id, title, version, document FROM canvas_state "
                       f"WHERE thread_id = '{thread_id}' ORDER BY created_seq")
    if not states.get("ok"):
        return states
    edits = await sql(bridge, "SELECT canvas_id, version, summary, touched, author, snippet "
                      f"FROM canvas_edits WHERE thread_id = '{thread_id}' "
                      "ORDER BY version DESC", max_rows=1000)
    rows = edits["result"]["items"] if edits.get("ok") else []
    items = []
    for st in states["result"]["items"]:
        mine = [_decoded(e) for e in rows if e["canvas_id"] == st["canvas_id"]]
        items.append({**_decoded(st), "edits": mine})
    return {"ok": True, "result": {"items": items}}


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    """A view row with its JSON columns decoded."""
    out = dict(row)
    for k in ("document", "touched", "snippet", "content"):
        if isinstance(out.get(k), str):
            with contextlib.suppress(ValueError):
                out[k] = json.loads(out[k])
    return out


async def usage(bridge: Bridge, user_id: str, period: str | None) -> dict[str, Any]:
    """Token and cost totals per model for the period, the budget, and (operators) the
    user's invoices."""
    check_token(user_id, what="user_id")
    if period and not _PERIOD.match(period):
        raise InvalidInput("period must be YYYY-MM", details={"field": "period"})
    body: dict[str, Any] = {"user_id": user_id}
    if period:
        body["period"] = period
    out: dict[str, Any] = {
        "summary": await bridge.request(f"query.{user_id}.usage.summary", body),
        "budget": await bridge.request(f"query.{user_id}.budget.status", {"user_id": user_id})}
    if bridge.identity.is_operator:
        where = f" AND period = '{period}'" if period else ""
        out["invoices"] = await sql(bridge, "SELECT invoice_id, period, amount, currency, "
                                    "status, CAST(issued_at AS VARCHAR) AS issued_at FROM "
                                    f"invoices WHERE user_id = '{user_id}'{where} "
                                    "ORDER BY period DESC")
    return {"ok": True, "result": out}


def _wf_subject(bridge: Bridge, user_id: str, op: str) -> str:
    kind = "workflows" if op in ("list", "status", "steps") else "workflow"
    if bridge.identity.is_operator:
        return f"ops.workflows.{op}"
    return f"{'query' if kind == 'workflows' else 'cmd'}.{user_id}.{kind}.{op}"


async def workflows(bridge: Bridge, user_id: str) -> dict[str, Any]:
    """The user's workflow runs (``state``, ``error``, ``steps`` count...), each with its
    steps in ``step_items`` (name, kind, status, attempts, error)."""
    check_token(user_id, what="user_id")
    runs = await bridge.request(_wf_subject(bridge, user_id, "list"),
                                {"user_id": user_id, "limit": MAX_PAGE})
    if not runs.get("ok"):
        return runs
    items = runs["result"]["items"]
    for run in items:
        steps = await bridge.request(_wf_subject(bridge, user_id, "steps"),
                                     {"user_id": user_id, "run_id": run["run_id"]})
        run["step_items"] = steps["result"]["items"] if steps.get("ok") else []
    return {"ok": True, "result": {"items": items}}


async def workflow_action(bridge: Bridge, user_id: str, run_id: str, op: str
                          ) -> dict[str, Any]:
    """``cancel`` or ``restart`` a run."""
    check_token(user_id, what="user_id")
    check_token(run_id, what="run_id")
    if op not in ("cancel", "restart"):
        raise InvalidInput("op must be cancel or restart", details={"field": "op"})
    body: dict[str, Any] = {"command_id": new_id(), "user_id": user_id, "run_id": run_id}
    if op == "cancel":
        body["reason"] = "cancelled from the playground"
    subject = f"ops.workflows.{op}" if bridge.identity.is_operator \
        else f"cmd.{user_id}.workflow.{op}"
    return await bridge.request(subject, body)
