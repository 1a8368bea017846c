"""Every event type lands in its view, with the documented semantics."""

from __future__ import annotations

import json
from datetime import date

from events import Aggregate, EventStore, ThreadDeleted, new_id
from events.catalogue import CATALOGUE
from projections.projector import Projector
from projections.views import VIEWS

from .factories import create_thread, every_event_type, save_message


def rows(p: Projector, sql: str, *params: object) -> list[tuple[object, ...]]:
    return p.cursor().execute(sql, list(params)).fetchall()


async def test_every_event_type_lands_in_its_view(store: EventStore,
                                                  projector: Projector) -> None:
    user, thread, mid = "u_" + new_id()[:8], new_id(), new_id()
    last = 0
    events = every_event_type(user, thread, mid)
    handled = set().union(*(v.handles for v in VIEWS)) - {"thread_deleted"}  # tested below
    assert {type(e).model_fields["type"].default for _, e in events} == handled
    assert handled <= set(CATALOGUE.types())
    for agg, ev in events:
        last = (await store.append(agg, [ev], user_id=user)).last_seq
    await projector.wait_for(last, timeout=10)

    (t,) = rows(projector, "SELECT user_id, title, summary, status, deleted, metadata "
                           "FROM threads WHERE thread_id = ?", thread)
    assert t[:5] == (user, "renamed", "sum", "archived", False)
    assert json.loads(str(t[5])) == {"a": 1}
    (m,) = rows(projector, 'SELECT status, text, is_tool, model, provider, prompt_tokens, '
                           'completion_tokens, total_tokens, reasoning_tokens, '
                           'cached_input_tokens, cache_write_tokens, finish_reason, agent_name '
                           'FROM messages WHERE message_id = ?', mid)
    assert m == ("success", "hello world", False, "m1", "p1", 10, 5, 15, 1, 2, 3, "stop", "ag")
    calls = {r[0]: r[1:] for r in rows(
        projector, "SELECT tool_call_id, status, approved, result, error, needs_approval "
                   "FROM tool_calls WHERE thread_id = ? ORDER BY tool_call_id", thread)}
    assert calls["c1"][0] == "completed" and json.loads(str(calls["c1"][2])) == {"answer": 42}
    assert calls["c2"][:2] == ("rejected", False) and calls["c2"][4] is True
    assert calls["c3"][0] == "failed" and calls["c3"][3] == "exploded"
    (u,) = rows(projector, "SELECT user_id, thread_id, model, total_tokens, cost, "
                           "billing_period FROM usage WHERE user_id = ?", user)
    assert u == (user, thread, "m1", 15, 0.25, date(2024, 3, 1))
    (cv,) = rows(projector, "SELECT version, document FROM canvas_state WHERE thread_id = ?",
                 thread)
    assert cv[0] == 1 and json.loads(str(cv[1]))["elements"]["a"]["text"] == "hi"
    (ce,) = rows(projector, "SELECT summary FROM canvas_edits WHERE thread_id = ?", thread)
    assert ce == ("set a's text",)
    (emb,) = rows(projector, "SELECT message_id, user_id, model, dimensions, vector "
                             "FROM message_embeddings WHERE thread_id = ?", thread)
    assert emb[:4] == (mid, user, "emb", 3)
    assert [round(float(v), 6) for v in emb[4]] == [0.6, 0.8, 0.0]
    invoices = rows(projector, "SELECT period, status FROM invoices WHERE user_id = ? "
                               "ORDER BY period", user)
    assert [tuple(map(str, r)) for r in invoices] == [("2024-03", "paid"),
                                                      ("2024-04", "failed")]


async def test_thread_deletion_removes_content_and_keeps_usage(
        store: EventStore, projector: Projector) -> None:
    user, thread, mid = "u_" + new_id()[:8], new_id(), new_id()
    for agg, ev in every_event_type(user, thread, mid):
        await store.append(agg, [ev], user_id=user)
    r = await store.append(Aggregate.thread(thread), [ThreadDeleted(thread_id=thread)],
                           user_id=user)
    await projector.wait_for(r.last_seq, timeout=10)
    for table in ("threads", "messages", "tool_calls", "canvas_state", "canvas_edits",
                  "message_embeddings"):
        assert rows(projector, f"SELECT count(*) FROM {table} WHERE thread_id = ?",
                    thread) == [(0,)]
    assert rows(projector, "SELECT count(*) FROM usage WHERE thread_id = ?", thread) == [(1,)]


async def test_deleting_a_thread_never_seen_is_a_no_op(store: EventStore,
                                                       projector: Projector) -> None:
    other, _ = await create_thread(store, "u1")
    r = await store.append(Aggregate.thread(new_id()), [ThreadDeleted(thread_id=new_id())])
    await projector.wait_for(r.last_seq, timeout=10)
    assert rows(projector, "SELECT count(*) FROM threads WHERE thread_id = ?", other) == [(1,)]


async def test_message_saved_twice_keeps_the_last_save(store: EventStore,
                                                       projector: Projector) -> None:
    thread, _ = await create_thread(store, "u1")
    mid, seq = await save_message(store, "u1", thread, 0, text="first")
    await projector.wait_for(seq, timeout=10)
    _, seq = await save_message(store, "u1", thread, 0, text="second", message_id=mid)
    await projector.wait_for(seq, timeout=10)
    assert rows(projector, "SELECT text FROM messages WHERE message_id = ?", mid) == [("second",)]
