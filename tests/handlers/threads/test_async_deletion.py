"""Asynchronous deletion (``wait: false``): the tombstone before the reply, the purges in
the background, durable through a crash (pending records resumed at handler start)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from events import Aggregate, ThreadDeleted, ThreadlogError, Usage, UsageRecorded
from handlers import build_handlers, make_broker
from handlers.threads.pending_purges import thread_key, user_key
from tests.conftest import RuntimeFactory
from threadlog.parts import projector_part
from threadlog.runtime import Runtime


@pytest.fixture
async def rt(runtime_factory: RuntimeFactory) -> AsyncIterator[Runtime]:
    async with runtime_factory(extra_parts=[projector_part]) as r:
        yield r


async def types_of(rt: Runtime, tid: str) -> list[str]:
    return [e.type for e in await rt.store.read(Aggregate.thread(tid))]


async def thread_with_messages(rt: Runtime, user: str = "u1") -> str:
    c = rt.client(user)
    tid = (await c.create_thread(title="secret")).value["thread_id"]
    await c.save_message(tid, "user", "my secret")
    await c.save_message(tid, "assistant", "kept safe")
    return str(tid)


async def rows(rt: Runtime, tid: str, min_seq: int | None) -> list[list[int]]:
    res = await rt.client("u1").query(
        "ops.sql", min_seq=min_seq,
        sql=f"SELECT (SELECT count(*) FROM threads WHERE thread_id = '{tid}'), "
            f"(SELECT count(*) FROM messages WHERE thread_id = '{tid}')")
    return list(res.value["rows"])


async def test_async_delete_replies_before_the_purge_which_then_completes(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    c = rt.client("u1")
    tid = await thread_with_messages(rt)
    before = await c.save_message(tid, "user", "one more")
    assert await rows(rt, tid, before.seq) == [[1, 3]]
    deleter = rt.handlers.deleter
    gate, started = asyncio.Event(), asyncio.Event()
    purge = deleter._purge

    async def gated(thread_id: str) -> None:
        started.set()
        await gate.wait()
        await purge(thread_id)

    monkeypatch.setattr(deleter, "_purge", gated)
    res = await c.delete_thread(tid, wait=False)
    assert res.value == {"thread_id": tid, "deleted": True, "purge_pending": True}
    await asyncio.wait_for(started.wait(), 10)
    # Replied, tombstoned, not purged yet: the thread is gone for commands already.
    assert await types_of(rt, tid) == ["thread_created", "message_saved", "message_saved",
                                       "message_saved", "thread_deleted"]
    with pytest.raises(ThreadlogError) as ei:
        await c.save_message(tid, "user", "again")
    assert ei.value.code == "not_found"
    pending = await c.deletions_pending(tid)
    assert not pending.value["done"]
    assert [(p["kind"], p["thread_id"]) for p in pending.value["pending"]] == [
        ("thread", tid)]
    assert (await rt.client("bob").deletions_pending(tid)).value["done"]  # not bob's

    gate.set()
    done = await c.deletions_pending(tid, wait_s=10)
    assert done.value == {"user_id": "u1", "pending": [], "done": True}
    events = await rt.store.read(Aggregate.thread(tid))
    assert [e.type for e in events] == ["thread_deleted"] and events[0].seq == res.seq
    assert await rows(rt, tid, res.seq) == [[0, 0]]
    again = await c.delete_thread(tid, wait=False)  # idempotent
    assert again.value["deleted"] and (await c.deletions_pending(tid, wait_s=10)).value[
        "done"]


async def test_async_delete_refuses_bad_input_and_other_users_threads(rt: Runtime) -> None:
    tid = await thread_with_messages(rt, "alice")
    bob = rt.client("bob")
    before = await rt.store.last_seq()
    for call, code in ((bob.delete_thread(tid, wait=False), "forbidden"),
                       (bob.delete_thread("nope", wait=False), "not_found"),
                       (bob.delete_thread("a.b", wait=False), "invalid_input"),
                       (bob.request("cmd.thread.delete", {
                           "command_id": "c1", "user_id": "bob", "thread_id": tid,
                           "wait": "later"}), "invalid_input")):
        with pytest.raises(ThreadlogError) as ei:
            await call
        assert ei.value.code == code
    assert await rt.store.last_seq() == before
    assert await rt.handlers.deleter.purges.records() == {}  # type: ignore[union-attr]
    assert len(await types_of(rt, tid)) == 3


async def test_async_user_deletion_returns_at_once_and_deletes_every_thread(
        rt: Runtime) -> None:
    alice = rt.client("alice")
    a1, a2 = await thread_with_messages(rt, "alice"), await thread_with_messages(rt, "alice")
    b1 = await thread_with_messages(rt, "bob")
    await rt.store.append(Aggregate("usage", "alice"), [UsageRecorded(
        call_id="c1", user_id="alice", thread_id=a1, model="m", usage=Usage(total_tokens=3))])
    res = await alice.delete_user_data(wait=False)
    assert sorted(res.value["threads_deleted"]) == sorted([a1, a2])
    assert res.value["purge_pending"] is True
    assert (await alice.deletions_pending(wait_s=10)).value["done"]
    for tid in (a1, a2):
        assert await types_of(rt, tid) == ["thread_deleted"]
    assert len(await types_of(rt, b1)) == 3
    assert len(await rt.store.read(Aggregate("usage", "alice"))) == 1


async def test_purges_left_pending_by_a_crash_are_resumed_when_handlers_start(
        rt: Runtime) -> None:
    """The process died after the tombstone (or before it) and before the purge: its
    records are in the bucket; handlers starting (another process) finish the work."""
    purges = rt.handlers.deleter.purges
    assert purges is not None
    tombstoned = await thread_with_messages(rt)
    never_tombstoned = await thread_with_messages(rt)
    a1, a2 = await thread_with_messages(rt, "carol"), await thread_with_messages(rt, "carol")
    res = await rt.store.append(Aggregate.thread(tombstoned),
                                [ThreadDeleted(thread_id=tombstoned)])
    await purges.add(thread_key("u1", tombstoned), {
        "kind": "thread", "user_id": "u1", "thread_id": tombstoned, "command_id": "d1"})
    await purges.add(thread_key("u1", never_tombstoned), {
        "kind": "thread", "user_id": "u1", "thread_id": never_tombstoned,
        "command_id": "d2"})
    await purges.add(user_key("carol", "d3"), {
        "kind": "user", "user_id": "carol", "command_id": "d3"})

    broker = make_broker(rt.urls, logger=None)
    other = await build_handlers(broker, rt.store, None)  # "the next start"
    try:
        assert await purges.wait(">", 10) == {}
    finally:
        await other.close()
    assert await types_of(rt, tombstoned) == ["thread_deleted"]
    assert len(await types_of(rt, never_tombstoned)) == 3  # nothing was owed
    for tid in (a1, a2):
        assert await types_of(rt, tid) == ["thread_deleted"]
    assert await rows(rt, tombstoned, res.last_seq) == [[0, 0]]
