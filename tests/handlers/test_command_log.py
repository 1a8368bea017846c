"""The command log never answers ``ok`` for a command whose events are not in the stream:
after the stream lost its tail (simulated by recreating it with fewer events, whose
sequences the stored reply then names), a re-sent command is decided again and its
events are appended; a reply whose events are there is still returned as is."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import pytest

from events import Aggregate, EventStore, ThreadCreated, new_id
from events.replies import Reply
from handlers.command_log import CommandLog
from handlers.runner import CommandRunner
from handlers.threads.commands import CreateThread
from handlers.threads.decisions import create_thread, replay_thread_result
from handlers.threads.state import ThreadStateCache
from tests.conftest import LogWatch


@pytest.fixture
async def command_log(store: EventStore) -> AsyncIterator[CommandLog]:
    bucket = f"{store.stream}_commands"  # as the runtime names it: checked against store
    log = await CommandLog.open(store.js, bucket, ttl_s=120.0)
    yield log
    await log.drain()
    await store.js.delete_key_value(bucket)


@pytest.fixture
def logwatch() -> Iterator[LogWatch]:
    watch = LogWatch()
    logger = logging.getLogger("handlers.command_log")
    logger.addHandler(watch)
    yield watch
    logger.removeHandler(watch)


async def create(store: EventStore, log: CommandLog, command_id: str, thread_id: str
                 ) -> Reply:
    runner = CommandRunner(store, ThreadStateCache(store), log)
    cmd = CreateThread(command_id=command_id, user_id="ann", thread_id=thread_id)
    return await runner.run(cmd, thread_id, create_thread, replay_thread_result)


async def lose_the_tail(store: EventStore, keep: int, then_append: int) -> None:
    """The stream after an OS crash lost its tail: only the first ``keep`` events
    survive (recreated here), then ``then_append`` other writes reuse the sequences."""
    old = await store.js.stream_info(store.stream)
    survivors = [await store.js.get_msg(store.stream, seq) for seq in range(1, keep + 1)]
    await store.js.delete_stream(store.stream)
    await store.setup()
    for msg in survivors:
        assert msg.subject is not None
        await store.js.publish(msg.subject, msg.data or b"", headers=msg.headers)
    for _ in range(then_append):
        t = "other" + new_id()[:8]
        await store.append(Aggregate.thread(t), [ThreadCreated(thread_id=t, user_id="bob",
                                                               title="new")], user_id="bob")
    assert (await store.js.stream_info(store.stream)).state.last_seq == keep + then_append
    assert old.state.last_seq > keep


@pytest.mark.parametrize("reused", [False, True], ids=["gone", "sequence-reused"])
async def test_a_resent_command_whose_events_were_lost_is_decided_again(
        store: EventStore, command_log: CommandLog, logwatch: LogWatch, reused: bool) -> None:
    for i in range(3):
        assert (await create(store, command_log, f"c{i}", f"t{i}-{new_id()[:6]}")).ok
    lost_thread = "lost" + new_id()[:8]
    first = await create(store, command_log, "x1", lost_thread)
    assert first.ok and first.seq == 4
    assert await create(store, command_log, "x1", lost_thread) == first  # from the log

    await lose_the_tail(store, keep=3, then_append=5 if reused else 0)

    again = await create(store, command_log, "x1", lost_thread)
    assert again.ok and again.seq == (9 if reused else 4)
    assert command_log.stale_dropped == 1
    assert any("stale" in r.getMessage() and r.levelno == logging.WARNING
               for r in logwatch.records)
    # Its event is in the stream now, under this command's message id.
    msg = await store.js.get_msg(store.stream, again.seq)
    assert (msg.headers or {})["Nats-Msg-Id"].split(":")[1] == "x1"
    # And the new reply is what a further re-send gets, without another append.
    last = await store.last_seq()
    assert await create(store, command_log, "x1", lost_thread) == again
    assert await store.last_seq() == last and command_log.stale_dropped == 1


async def test_a_reply_naming_an_earlier_event_of_another_command_is_kept(
        store: EventStore, command_log: CommandLog) -> None:
    """A command that appended nothing answers with the aggregate's position: another
    command's event, stored before the reply was recorded. That reply stays valid."""
    created = await create(store, command_log, "c0", "t" + new_id()[:8])
    assert created.seq is not None
    noop = CreateThread(command_id="noop1", user_id="ann", thread_id="t" + new_id()[:8])
    recorded = Reply.success({"nothing": "appended"}, seq=created.seq)
    await command_log.record(noop, recorded)
    assert await command_log.lookup(noop) == recorded
    assert command_log.stale_dropped == 0


async def test_failure_replies_and_other_streams_are_not_checked(
        store: EventStore) -> None:
    bucket = f"CL{new_id()[:8].upper()}"  # not <stream>_commands: no events stream
    log = await CommandLog.open(store.js, bucket, ttl_s=60.0)
    try:
        assert log.events_stream is None
        cmd = CreateThread(command_id="f1", user_id="ann", thread_id="t" + new_id()[:8])
        reply = Reply.success({"x": 1}, seq=10_000)
        await log.record(cmd, reply)
        assert await log.lookup(cmd) == reply
    finally:
        await store.js.delete_key_value(bucket)


async def test_a_reply_whose_event_was_erased_is_kept_not_decided_again(
        store: EventStore, command_log: CommandLog, logwatch: LogWatch) -> None:
    """An event deleted from the middle of the stream (a thread's erasure) is not a lost
    tail: the command was done; deciding it again would write the deleted data back."""
    thread = "t" + new_id()[:8]
    first = await create(store, command_log, "e1", thread)
    assert first.ok and first.seq is not None
    await create(store, command_log, "e2", "t" + new_id()[:8])  # a later event
    await store.erase_seqs(store.stream, [first.seq])
    last = await store.last_seq()
    assert await create(store, command_log, "e1", thread) == first
    assert await store.last_seq() == last  # nothing written back
    assert command_log.stale_dropped == 0
    assert not [r for r in logwatch.records if "stale" in r.getMessage()]
