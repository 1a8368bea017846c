"""Message ids are chosen by clients and unique only within a thread: the same id in two
threads (of two users, or of one) is two messages. Rows of ``messages`` and
``message_embeddings`` are keyed by ``(thread_id, message_id)``; a save, status change,
finalization, embedding or deletion in one thread never touches the other thread's row,
whatever the batch cuts (fold in the batch, update of a stored row, replace after a key
conflict), and a rebuild gives the same tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

from events import (
    Aggregate,
    EventStore,
    MessageEmbedded,
    MessageFinalized,
    MessageStatusChanged,
    TextPart,
    ThreadDeleted,
    new_id,
)
from events.connection import NatsEndpoint
from projections.projector import Projector, ProjectorConfig, run_until_caught_up
from threadlog.embedded_nats import EmbeddedNats

from .conftest import Ask
from .factories import create_thread, save_message

_COLS = ('thread_id, message_id, user_id, "order", step_order, role, status, text, content, '
         "is_tool, model, error, finish_reason, total_tokens, created_at, updated_at, seq")


async def _catch_up(nc: NATS, url: NatsEndpoint, db: Path, stream: str, **config: Any) -> Projector:
    p = Projector(ProjectorConfig(db_path=db, stream=stream, **config), nc, url)
    await run_until_caught_up(p)
    return p


def _tables(p: Projector) -> dict[str, list[tuple[Any, ...]]]:
    cur = p.cursor()
    return {
        "messages": cur.execute(f"SELECT {_COLS} FROM messages ORDER BY thread_id, "
                                "message_id").fetchall(),
        "message_embeddings": cur.execute(
            "SELECT thread_id, message_id, user_id, model, dimensions, vector, seq "
            "FROM message_embeddings ORDER BY thread_id, message_id").fetchall(),
    }


def _row(p: Projector, thread: str, mid: str) -> dict[str, Any] | None:
    cur = p.cursor().execute(f"SELECT {_COLS} FROM messages WHERE thread_id = ? AND "
                             "message_id = ?", [thread, mid])
    names = [d[0] for d in cur.description or []]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    assert len(rows) <= 1
    return rows[0] if rows else None


async def _finalize(store: EventStore, user: str, thread: str, mid: str, *, status: str,
                    text: str | None = None, error: str | None = None) -> int:
    content = [TextPart(text=text)] if text is not None else []
    r = await store.append(Aggregate.thread(thread), [MessageFinalized(
        message_id=mid, thread_id=thread, status=status,
        content=content, error=error, finish_reason="stop" if error is None else "error")],
        user_id=user)
    return r.last_seq


async def _status(store: EventStore, user: str, thread: str, mid: str, status: str) -> int:
    r = await store.append(Aggregate.thread(thread), [MessageStatusChanged(
        message_id=mid, thread_id=thread, status=status)],
        user_id=user)
    return r.last_seq


async def _embed(store: EventStore, user: str, thread: str, mid: str,
                 vector: list[float]) -> int:
    r = await store.append(Aggregate.thread(thread), [MessageEmbedded(
        message_id=mid, thread_id=thread, model="emb", dimensions=len(vector),
        vector=vector)], user_id=user)
    return r.last_seq


async def test_one_message_id_in_two_threads_is_two_independent_rows(
        store: EventStore, nc: NATS, nats_server: EmbeddedNats, tmp_path: Path) -> None:
    url, db = nats_server.endpoint, tmp_path / "v.duckdb"
    mid = "m" + new_id()
    bob_t, _ = await create_thread(store, "bob")
    alice_t, _ = await create_thread(store, "alice")
    # 1. one catch-up (the saves and patches fold in the batch): bob's pending message is
    # finalized in his thread; alice's save of the same id comes after it and stays.
    await save_message(store, "bob", bob_t, 0, role="assistant", status="pending", text="",
                       message_id=mid)
    await save_message(store, "alice", alice_t, 0, text="alice's", message_id=mid)
    await _finalize(store, "bob", bob_t, mid, status="success", text="bob's answer")
    await _embed(store, "bob", bob_t, mid, [1.0, 0.0])
    await _embed(store, "alice", alice_t, mid, [0.0, 1.0])
    p = await _catch_up(nc, url, db, store.stream)
    bob_row, alice_row = _row(p, bob_t, mid), _row(p, alice_t, mid)
    assert bob_row is not None and alice_row is not None
    assert (bob_row["user_id"], bob_row["status"], bob_row["text"]) == (
        "bob", "success", "bob's answer")
    assert (alice_row["user_id"], alice_row["status"], alice_row["text"], alice_row["error"]) \
        == ("alice", "success", "alice's", None)
    assert [(t, u, v) for t, _, u, _, _, v, _ in _tables(p)["message_embeddings"]] == sorted(
        [(bob_t, "bob", [1.0, 0.0]), (alice_t, "alice", [0.0, 1.0])])
    await p.close()

    # 2. later batches (updates of stored rows): alice saves the id pending again (a key
    # conflict: replace), aborts it; bob's row is untouched by both.
    await save_message(store, "alice", alice_t, 1, role="assistant", status="pending",
                       text="", message_id=mid)
    await _status(store, "alice", alice_t, mid, "pending")
    await _finalize(store, "alice", alice_t, mid, status="failed", error="ALICE WAS HERE")
    p = await _catch_up(nc, url, db, store.stream)
    assert _row(p, bob_t, mid) == bob_row
    alice_row = _row(p, alice_t, mid)
    assert alice_row is not None
    assert (alice_row["order"], alice_row["status"], alice_row["error"]) == (
        1, "failed", "ALICE WAS HERE")
    await p.close()

    # 3. a patch of a stored row (bob's) in the same batch as a save of the same id in a
    # third thread (carol's): the fold of carol's save must not take bob's patch, bob's
    # update must not reach alice's or carol's row.
    carol_t, _ = await create_thread(store, "carol")
    await save_message(store, "carol", carol_t, 0, text="carol's", message_id=mid)
    await _finalize(store, "bob", bob_t, mid, status="failed", error="bob's error")
    p = await _catch_up(nc, url, db, store.stream)
    bob_now, carol_row = _row(p, bob_t, mid), _row(p, carol_t, mid)
    assert bob_now is not None and carol_row is not None
    assert (bob_now["status"], bob_now["error"], bob_now["text"]) == (
        "failed", "bob's error", "bob's answer")
    assert (carol_row["status"], carol_row["error"], carol_row["text"]) == (
        "success", None, "carol's")
    assert _row(p, alice_t, mid) == alice_row
    await p.close()

    # 4. deleting bob's thread keeps alice's and carol's rows (and alice's vector).
    await store.append(Aggregate.thread(bob_t), [ThreadDeleted(thread_id=bob_t)],
                       user_id="bob")
    p = await _catch_up(nc, url, db, store.stream)
    assert _row(p, bob_t, mid) is None
    assert _row(p, alice_t, mid) == alice_row
    assert _row(p, carol_t, mid) == carol_row
    tables = _tables(p)
    assert [r[:3] for r in tables["message_embeddings"]] == [(alice_t, mid, "alice")]
    await p.close()

    # 5. a rebuild, in one batch and event by event, gives the same tables.
    for name, config in [("one", {}), ("each", {"batch_max": 1, "catchup_batch_max": 1})]:
        rebuilt = await _catch_up(nc, url, tmp_path / f"{name}.duckdb", store.stream,
                                  **config)
        assert _tables(rebuilt) == tables, name
        await rebuilt.close()


async def test_reads_return_only_the_asking_users_message_of_an_id(
        store: EventStore, ask: Ask) -> None:
    mid = "m" + new_id()
    bob_t, _ = await create_thread(store, "bob")
    await save_message(store, "bob", bob_t, 0, text="zebra of bob", message_id=mid)
    await _embed(store, "bob", bob_t, mid, [1.0, 0.0])
    alice_t, _ = await create_thread(store, "alice")
    await save_message(store, "alice", alice_t, 0, text="zebra of alice", message_id=mid)
    seq = await _embed(store, "alice", alice_t, mid, [1.0, 0.0])
    for user, thread, text in [("bob", bob_t, "zebra of bob"),
                               ("alice", alice_t, "zebra of alice")]:
        listed = await ask("messages.list", {"user_id": user, "thread_id": thread,
                                             "min_seq": seq})
        assert [(m["message_id"], m["text"]) for m in listed.result["items"]] == [
            (mid, text)], listed
        got = await ask("messages.get", {"user_id": user, "message_ids": [mid]})
        assert [(m["thread_id"], m["text"]) for m in got.result["items"]] == [
            (thread, text)], got
        bodies: list[dict[str, Any]] = [
            {"text": "zebra"}, {"vector": [1.0, 0.0], "model": "emb"},
            {"text": "zebra", "vector": [1.0, 0.0], "model": "emb"}]
        scopes: list[dict[str, Any]] = [{"thread_id": thread}, {"all_threads": True}]
        for body in bodies:
            for scope in scopes:
                found = await ask("messages.search", {
                    "user_id": user, "before": 0, "after": 0, **scope, **body})
                assert found.ok, found.error
                assert [(m["thread_id"], m["text"]) for m in found.result["items"]] == [
                    (thread, text)], (user, body, scope, found.result)
                assert found.result["hits"] == [mid]
                assert [r["thread_id"] for r in found.result["ranked"]] == [thread]
    carol = await ask("messages.get", {"user_id": "carol", "message_ids": [mid]})
    assert carol.error is not None and carol.error.code == "forbidden"

    # the same id in two threads of one user: both are hers, both found
    alice_t2, _ = await create_thread(store, "alice")
    await save_message(store, "alice", alice_t2, 0, text="zebra again", message_id=mid)
    seq = await _embed(store, "alice", alice_t2, mid, [1.0, 0.0])
    got = await ask("messages.get", {"user_id": "alice", "message_ids": [mid],
                                     "min_seq": seq})
    assert [(m["thread_id"], m["text"]) for m in got.result["items"]] == [
        (alice_t, "zebra of alice"), (alice_t2, "zebra again")]
    for body in bodies[:2]:
        found = await ask("messages.search", {"user_id": "alice", "before": 0, "after": 0,
                                              "all_threads": True, **body})
        assert sorted((m["thread_id"], m["text"], m["found_by"])
                      for m in found.result["items"]) == sorted(
            [(alice_t, "zebra of alice", found.result["ranked"][0]["found_by"]),
             (alice_t2, "zebra again", found.result["ranked"][0]["found_by"])])
        assert found.result["hits"] == [mid, mid]
        assert {r["thread_id"] for r in found.result["ranked"]} == {alice_t, alice_t2}
