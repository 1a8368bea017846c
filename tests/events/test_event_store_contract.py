"""Contract suite for the event store, run against a real nats-server.

``EventStoreContract`` holds the behaviours any store must have; ``TestJetStreamStore``
runs them on JetStream (a future backend subclasses the contract with its own fixture).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events import (
    Aggregate,
    ConcurrencyError,
    EventStore,
    EventStreamSpec,
    MessageSaved,
    TextPart,
    ThreadCreated,
    ThreadDeleted,
    ThreadMetadataUpdated,
)
from threadlog.embedded_nats import EmbeddedNats


def created(tid: str) -> ThreadCreated:
    return ThreadCreated(thread_id=tid, user_id="u1")


def msg(tid: str, mid: str, order: int) -> MessageSaved:
    return MessageSaved(message_id=mid, thread_id=tid, order=order, role="user",
                        content=[TextPart(text=f"m{order}")])


class EventStoreContract:
    async def test_events_read_back_in_append_order(self, store: EventStore) -> None:
        a = Aggregate.thread("order")
        r = await store.append(a, [created("order")], "no_stream")
        for i in range(5):
            r = await store.append(a, [msg("order", f"m{i}", i)], r.last_seq)
        evs = await store.read(a)
        assert [e.type for e in evs] == ["thread_created"] + ["message_saved"] * 5
        assert [e.event.order for e in evs[1:]] == list(range(5))  # type: ignore[attr-defined]
        assert [e.seq for e in evs] == sorted(e.seq for e in evs)

    async def test_stale_expected_version_is_a_conflict_with_current_version(
            self, store: EventStore) -> None:
        a = Aggregate.thread("c1")
        r1 = await store.append(a, [created("c1")], "no_stream")
        r2 = await store.append(a, [msg("c1", "m0", 0)], r1.last_seq)
        with pytest.raises(ConcurrencyError) as ei:
            await store.append(a, [msg("c1", "m1", 1)], r1.last_seq)
        assert ei.value.current_version == r2.last_seq
        assert len(await store.read(a)) == 2

    async def test_stale_writer_appending_a_new_event_type_is_rejected(
            self, store: EventStore) -> None:
        """The check covers all subjects of the aggregate, not just the event's own."""
        a = Aggregate.thread("c2")
        r1 = await store.append(a, [created("c2")], "no_stream")
        await store.append(a, [msg("c2", "m0", 0)], r1.last_seq)
        with pytest.raises(ConcurrencyError):
            await store.append(a, [ThreadMetadataUpdated(thread_id="c2", title="x")],
                               r1.last_seq)
        with pytest.raises(ConcurrencyError):
            await store.append(a, [created("c2")], "no_stream")

    async def test_conflicts_are_per_aggregate(self, store: EventStore) -> None:
        await store.append(Aggregate.thread("p1"), [created("p1")], "no_stream")
        r = await store.append(Aggregate.thread("p2"), [created("p2")], "no_stream")
        assert r.count == 1 and not r.duplicate

    async def test_duplicate_command_id_returns_original_sequence(self, store: EventStore
                                                                   ) -> None:
        a = Aggregate.thread("d1")
        first = await store.append(a, [created("d1")], "no_stream", command_id="cmd1")
        again = await store.append(a, [created("d1")], "no_stream", command_id="cmd1")
        assert again.duplicate and again.last_seq == first.last_seq
        batch = [msg("d1", "m0", 0), msg("d1", "m1", 1)]
        b1 = await store.append(a, batch, first.last_seq, command_id="cmd2")
        b2 = await store.append(a, batch, first.last_seq, command_id="cmd2")
        assert b2.duplicate and (b2.first_seq, b2.last_seq) == (b1.first_seq, b1.last_seq)
        assert len(await store.read(a)) == 3

    async def test_duplicate_without_version_check_returns_original(self, store: EventStore
                                                                     ) -> None:
        a = Aggregate.thread("d2")
        first = await store.append(a, [created("d2")], command_id="c")
        await store.append(a, [msg("d2", "x", 0)])
        again = await store.append(a, [created("d2")], command_id="c")
        assert again.duplicate and again.last_seq == first.last_seq

    async def test_multi_event_append_is_all_or_nothing(self, store: EventStore) -> None:
        a = Aggregate.thread("b1")
        r = await store.append(a, [created("b1")], "no_stream")
        batch = [msg("b1", f"m{i}", i) for i in range(10)]
        ok = await store.append(a, batch, r.last_seq)
        assert ok.count == 10 and ok.last_seq - ok.first_seq == 9
        with pytest.raises(ConcurrencyError):
            await store.append(a, batch, r.last_seq)  # stale: the whole batch is refused
        assert len(await store.read(a)) == 11

    async def test_replay_from_a_sequence(self, store: EventStore) -> None:
        seqs = []
        for i in range(6):
            tid = f"r{i}"
            seqs.append((await store.append(Aggregate.thread(tid), [created(tid)])).last_seq)
        got = [e.seq async for e in store.replay(seqs[3])]
        assert got == seqs[3:]
        assert [e.seq async for e in store.replay(seqs[-1] + 1)] == []

    async def test_purge_keeps_only_the_tombstone(self, store: EventStore) -> None:
        a = Aggregate.thread("del")
        await store.append(a, [created("del"), msg("del", "m", 0)])
        await store.append(a, [ThreadDeleted(thread_id="del")])
        await store.purge(a, keep_last=1)
        assert [e.type for e in await store.read(a)] == ["thread_deleted"]
        assert [e.type async for e in store.replay(1)] == ["thread_deleted"]

    async def test_watch_catches_up_then_follows_live(self, store: EventStore) -> None:
        a = Aggregate.thread("w")
        await store.append(a, [created("w")])
        seen: list[int] = []
        done = asyncio.Event()

        async def follow() -> None:
            async for ev in store.watch(a):
                seen.append(ev.seq)
                if len(seen) == 3:
                    done.set()
                    return

        task = asyncio.create_task(follow())
        await store.append(a, [msg("w", "m0", 0)])
        await store.append(a, [msg("w", "m1", 1)])
        await asyncio.wait_for(done.wait(), 10)
        await task
        assert len(seen) == 3 and seen == sorted(seen)

    @settings(max_examples=8, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(writers=st.integers(2, 6), per_writer=st.integers(1, 6))
    async def test_concurrent_appenders_never_leave_gaps_or_duplicate_orders(
            self, store: EventStore, writers: int, per_writer: int) -> None:
        from events import new_id

        tid = "h" + new_id()[:12]
        a = Aggregate.thread(tid)
        await store.append(a, [created(tid)], "no_stream")

        async def writer(w: int) -> None:
            for k in range(per_writer):
                while True:
                    evs = await store.read(a)
                    version = evs[-1].seq
                    next_order = sum(1 for e in evs if e.type == "message_saved")
                    try:
                        await store.append(a, [msg(tid, f"w{w}k{k}", next_order)], version)
                        break
                    except ConcurrencyError:
                        continue

        await asyncio.gather(*(writer(w) for w in range(writers)))
        orders = [e.event.order for e in await store.read(a)  # type: ignore[attr-defined]
                  if e.type == "message_saved"]
        assert orders == list(range(writers * per_writer))


    async def test_two_appends_in_one_round_trip_land_one_after_the_other(
            self, store: EventStore) -> None:
        a = Aggregate.thread("two")
        r0 = await store.append(a, [created("two")], "no_stream")
        r1, r2 = await store.append_two(a, msg("two", "m0", 0), msg("two", "m1", 1),
                                        r0.last_seq, command_ids=("c-u", "c-p"))
        assert r2 is not None and r2.last_seq == r1.last_seq + 1 > r0.last_seq
        assert [e.event.order for e in (await store.read(a))[1:]] == [0, 1]  # type: ignore[attr-defined]

    async def test_the_second_is_not_stored_when_the_first_is_refused(
            self, store: EventStore) -> None:
        a = Aggregate.thread("two-stale")
        r0 = await store.append(a, [created("two-stale")], "no_stream")
        await store.append(a, [msg("two-stale", "m0", 0)], r0.last_seq)
        with pytest.raises(ConcurrencyError):
            await store.append_two(a, msg("two-stale", "x", 1), msg("two-stale", "y", 2),
                                   r0.last_seq, command_ids=("s-u", "s-p"))
        assert [e.type for e in await store.read(a)] == ["thread_created", "message_saved"]

    async def test_a_resent_pair_stores_nothing_twice(self, store: EventStore) -> None:
        """Re-sent after both landed, the stale first is a conflict (the runner then
        replays from the thread state) and the second is not stored again; re-sent when
        only the first landed, the first is a duplicate and the second is left to the
        caller's ordinary append (``None``), whose message-id dedupe holds."""
        a = Aggregate.thread("two-again")
        r0 = await store.append(a, [created("two-again")], "no_stream")
        first, second = msg("two-again", "m0", 0), msg("two-again", "m1", 1)
        await store.append_two(a, first, second, r0.last_seq, command_ids=("r-u", "r-p"))
        with pytest.raises(ConcurrencyError):
            await store.append_two(a, first, second, r0.last_seq, command_ids=("r-u", "r-p"))
        assert len(await store.read(a)) == 3

        b = Aggregate.thread("two-half")
        r0 = await store.append(b, [created("two-half")], "no_stream")
        first = msg("two-half", "m0", 0)
        await store.append(b, [first], r0.last_seq, command_id="h-u")  # then a crash
        await store.append(Aggregate.thread("two-other"), [created("two-other")])
        r1, r2 = await store.append_two(b, first, msg("two-half", "m1", 1), r0.last_seq,
                                        command_ids=("h-u", "h-p"))
        assert r1.duplicate and r2 is None
        assert len(await store.read(b)) == 2


class TestJetStreamStore(EventStoreContract):
    pass


async def test_events_survive_a_nats_server_restart(tmp_path: Path) -> None:
    srv = EmbeddedNats(tmp_path / "nats").start()
    try:
        nc = await srv.endpoint.connect()
        store = EventStore(nc, EventStreamSpec())
        await store.setup()
        a = Aggregate.thread("persist")
        r = await store.append(a, [created("persist"), msg("persist", "m", 0)])
        await nc.close()
        port = srv.port
        srv.stop()
        srv = EmbeddedNats(tmp_path / "nats", port=port).start()
        nc = await srv.endpoint.connect()
        store = EventStore(nc, EventStreamSpec())
        await store.setup()
        evs = await store.read(a)
        assert [e.seq for e in evs] == [r.first_seq, r.last_seq]
        assert evs[1].event == msg("persist", "m", 0)
        await nc.close()
    finally:
        srv.stop()


async def test_headers_reach_the_server_intact_on_the_fast_publish_path(store: EventStore
                                                                         ) -> None:
    """The store formats its own HPUB frames: the stored message must carry exactly the
    headers nats-py would have sent (message id, expected sequence and subject)."""
    a = Aggregate.thread("hdr")
    r = await store.append(a, [created("hdr")], "no_stream", command_id="cmd-hdr")
    msg = await store.js.get_msg(store.stream, r.last_seq)
    assert msg.headers == {"Nats-Msg-Id": "thread.hdr:cmd-hdr:0",
                           "Nats-Expected-Last-Subject-Sequence": "0",
                           "Nats-Expected-Last-Subject-Sequence-Subject": "events.thread.hdr.>"}
    assert msg.subject == "events.thread.hdr.thread_created"
