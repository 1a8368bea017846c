"""``EventStore.append_chain``: a command's events as single messages in one round trip,
stored in order and without gaps; another connection's message in between makes the
rest be sent again; a conflict leaves a prefix (the caller finishes it)."""

from __future__ import annotations

from typing import Any

import pytest

from events import (
    Aggregate,
    ConcurrencyError,
    EventStore,
    MessageSaved,
    TextPart,
    ThreadCreated,
    derived_id,
    new_id,
)
from events.store import H_MSG_ID


def created(tid: str) -> ThreadCreated:
    return ThreadCreated(thread_id=tid, user_id="u")


def msg(tid: str, mid: str, order: int) -> MessageSaved:
    return MessageSaved(message_id=mid, thread_id=tid, order=order, role="user",
                        content=[TextPart(text=mid)])


async def fresh(store: EventStore) -> tuple[Aggregate, str, int]:
    tid = "t" + new_id()[:12]
    a = Aggregate.thread(tid)
    r = await store.append(a, [created(tid)], "no_stream")
    return a, tid, r.last_seq


async def msg_ids(store: EventStore, a: Aggregate) -> list[str]:
    return [(m.headers or {}).get(H_MSG_ID, "") async for _, m in
            store._iterate_msgs(a.filter, 1, await store.version(a))]


async def test_a_chain_is_stored_in_order_with_the_ids_of_an_append(
        store: EventStore) -> None:
    a, tid, v = await fresh(store)
    evs = [msg(tid, f"m{i}", i) for i in range(3)]
    res = await store.append_chain(a, evs, v, command_id="c1")
    assert not res.duplicate and res.count == 3
    assert list(res.seqs) == [v + 1, v + 2, v + 3] and res.last_seq == v + 3
    recs = (await store.read(a))[1:]
    assert [r.event for r in recs] == evs
    assert [r.envelope.event_id for r in recs] == [derived_id("c1", str(n)) for n in range(3)]
    assert (await msg_ids(store, a))[1:] == [f"thread.{tid}:c1:{n}" for n in range(3)]


async def test_the_rest_of_a_chain_cut_short_gets_the_same_ids(store: EventStore) -> None:
    a, tid, v = await fresh(store)
    evs = [msg(tid, f"m{i}", i) for i in range(3)]
    r1 = await store.append_chain(a, evs[:1], v, command_id="c2")
    r2 = await store.append_chain(a, evs[1:], r1.last_seq, command_id="c2", first_index=1)
    assert r2.seqs == (r1.last_seq + 1, r1.last_seq + 2)
    recs = (await store.read(a))[1:]
    assert [r.envelope.event_id for r in recs] == [derived_id("c2", str(n)) for n in range(3)]
    # Re-sent whole, the chain stores nothing twice.
    again = await store.append_chain(a, evs, v, command_id="c2")
    assert again.duplicate
    assert len(await store.read(a)) == 4


async def test_a_message_of_another_aggregate_in_between_sends_the_rest_again(
        store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    a, tid, v = await fresh(store)
    other = Aggregate.thread("o" + new_id()[:12])
    writer = EventStore(store.nc, store.spec)
    real = store._request_in_order
    sent: list[int] = []

    async def cut(messages: list[tuple[str, bytes, dict[str, str]]]) -> list[Any]:
        sent.append(len(messages))
        if len(sent) > 1:
            return await real(messages)
        first = await real(messages[:1])
        await writer.append(other, [created(other.id)])  # another writer, in between
        return first + await real(messages[1:])

    monkeypatch.setattr(store, "_request_in_order", cut)
    evs = [msg(tid, f"m{i}", i) for i in range(3)]
    res = await store.append_chain(a, evs, v, command_id="c3")
    assert sent == [3, 2]  # the second and third were refused, then sent again
    assert [r.event for r in (await store.read(a))[1:]] == evs
    assert res.seqs[0] == v + 1 and res.seqs[1] == v + 3  # the other's event in between


async def test_a_conflict_in_the_middle_leaves_a_prefix_and_raises(
        store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    a, tid, v = await fresh(store)
    writer = EventStore(store.nc, store.spec)
    real = store._request_in_order
    calls: list[int] = []

    async def cut(messages: list[tuple[str, bytes, dict[str, str]]]) -> list[Any]:
        calls.append(len(messages))
        if len(calls) > 1:
            return await real(messages)
        first = await real(messages[:1])
        await writer.append(a, [msg(tid, "foreign", 9)])  # this thread, in between
        return first + await real(messages[1:])

    monkeypatch.setattr(store, "_request_in_order", cut)
    with pytest.raises(ConcurrencyError):
        await store.append_chain(a, [msg(tid, f"m{i}", i) for i in range(3)], v,
                                 command_id="c4")
    mids = [r.event.message_id for r in (await store.read(a))[1:]]  # type: ignore[attr-defined]
    assert mids == ["m0", "foreign"]
