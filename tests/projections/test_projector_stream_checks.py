"""The projector checks the stream against its checkpoint and rebuilds, with one WARNING
line, instead of skipping new events: a lost tail (the message block truncated as an OS
crash before fsync leaves it), a recreated stream, events purged before being projected."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from events import EventStore, EventStreamSpec, new_id
from projections.projector import Projector, ProjectorConfig
from projections.queries import QueryService
from projections.queries.models import MessagesGet
from tests.conftest import LogWatch
from tests.projections.factories import create_thread, message_ids, running_projector, save_message
from threadlog.embedded_nats import EmbeddedNats

REBUILD = "rebuilding every view from the log"


@pytest.fixture
def logwatch() -> Iterator[LogWatch]:
    watch = LogWatch()
    logger = logging.getLogger("projections")
    logger.addHandler(watch)
    yield watch
    logger.removeHandler(watch)


@contextlib.asynccontextmanager
async def running(config: ProjectorConfig, nc: NATS, srv: EmbeddedNats
                  ) -> AsyncIterator[Projector]:
    p = Projector(config, nc, srv.endpoint)
    await p.open()
    async with running_projector(p):
        yield p


def truncate_tail(srv: EmbeddedNats, stream: str, keep: float) -> None:
    """What an OS crash before fsync leaves: the stream's block file cut short (the
    server rebuilds its index from the blocks on start)."""
    blocks = sorted(srv.store_dir.rglob(f"streams/{stream}/msgs/*.blk"))
    assert blocks, f"no message block of {stream} under {srv.store_dir}"
    last = blocks[-1]
    with open(last, "r+b") as fh:
        fh.truncate(int(last.stat().st_size * keep))
    for index in srv.store_dir.rglob(f"streams/{stream}/msgs/index.db"):
        index.unlink()


def rebuild_lines(watch: LogWatch) -> list[str]:
    return [r.getMessage() for r in watch.records
            if r.levelno == logging.WARNING and REBUILD in r.getMessage()]


async def test_a_lost_stream_tail_rebuilds_and_new_writes_are_projected(
        fresh_nats_server: EmbeddedNats, tmp_path: Path, logwatch: LogWatch) -> None:
    srv = fresh_nats_server
    nc = await srv.endpoint.connect(max_reconnect_attempts=-1)
    try:
        stream = "EVTAIL" + new_id()[:6].upper()
        store = EventStore(nc, EventStreamSpec(name=stream))
        await store.setup()
        thread, _ = await create_thread(store, "u1")
        saved = [await save_message(store, "u1", thread, i) for i in range(300)]
        config = ProjectorConfig(db_path=tmp_path / "views.duckdb", stream=stream)
        async with running(config, nc, srv) as p:
            await p.wait_for(saved[-1][1], timeout=30)
            assert len(message_ids(p, thread)) == 300

            srv.stop()
            truncate_tail(srv, stream, keep=0.6)
            srv.start()  # same port and store: the clients reconnect
            await logwatch.wait_for("below the projector's checkpoint", 1, timeout=30)
            end = (await nc.jetstream().stream_info(stream)).state.last_seq
            assert end < saved[-1][1]
            survivors = {mid for mid, seq in saved if seq <= end}
            vanished = {mid for mid, seq in saved if seq > end}
            assert vanished

            new = [await save_message(store, "u1", thread, 1000 + i) for i in range(100)]
            last = new[-1][1]
            assert new[0][1] <= saved[-1][1]  # the new writes reuse lost sequences
            await p.wait_for(last, timeout=30)

            ids = message_ids(p, thread)
            assert not ids & vanished
            assert ids == survivors | {mid for mid, _ in new}
            service = QueryService(p)
            try:
                reply = await service.execute("messages.get", MessagesGet(
                    user_id="u1", message_ids=[new[-1][0]], min_seq=last))
            finally:
                service.close()
            assert reply.ok, reply.error
            assert reply.seq is not None and reply.seq >= last
            assert len(rebuild_lines(logwatch)) == 1, rebuild_lines(logwatch)
            assert p.health().state == "running"
            assert p.health().checkpoint >= last
    finally:
        await nc.close()


async def test_a_recreated_stream_rebuilds(nc: NATS, nats_server: EmbeddedNats,
                                          tmp_path: Path, logwatch: LogWatch) -> None:
    stream = "EVRECR" + new_id()[:6].upper()
    store = EventStore(nc, EventStreamSpec(name=stream))
    await store.setup()
    try:
        thread, _ = await create_thread(store, "u1")
        old = [await save_message(store, "u1", thread, i) for i in range(50)]
        config = ProjectorConfig(db_path=tmp_path / "views.duckdb", stream=stream,
                                 stream_check_s=0.5)
        async with running(config, nc, nats_server) as p:
            await p.wait_for(old[-1][1], timeout=30)
            await nc.jetstream().delete_stream(stream)
            await store.setup()
            thread2, _ = await create_thread(store, "u1")
            new = [await save_message(store, "u1", thread2, i) for i in range(10)]
            await logwatch.wait_for("was recreated", 1, timeout=30)
            await p.wait_for(new[-1][1], timeout=30)
            assert message_ids(p, thread) == set()
            assert message_ids(p, thread2) == {mid for mid, _ in new}
            assert len(rebuild_lines(logwatch)) == 1
    finally:
        await nc.jetstream().delete_stream(stream)


async def test_events_purged_before_being_projected_rebuild_on_start(
        nc: NATS, nats_server: EmbeddedNats, tmp_path: Path, logwatch: LogWatch) -> None:
    stream = "EVPURG" + new_id()[:6].upper()
    store = EventStore(nc, EventStreamSpec(name=stream))
    await store.setup()
    try:
        thread, _ = await create_thread(store, "u1")
        first = [await save_message(store, "u1", thread, i) for i in range(20)]
        config = ProjectorConfig(db_path=tmp_path / "views.duckdb", stream=stream)
        async with running(config, nc, nats_server) as p:
            await p.wait_for(first[-1][1], timeout=30)
        for i in range(10):  # never projected: the projector is down
            await save_message(store, "u1", thread, 100 + i)
        await nc.jetstream().purge_stream(stream)
        later = [await save_message(store, "u1", thread, 200 + i) for i in range(5)]
        async with running(config, nc, nats_server) as p:
            assert any("were removed before being projected" in m
                       for m in rebuild_lines(logwatch))
            await p.wait_for(later[-1][1], timeout=30)
            assert message_ids(p, thread) == {mid for mid, _ in later}
    finally:
        await nc.jetstream().delete_stream(stream)


async def test_a_lost_tail_overwritten_past_the_checkpoint_while_the_projector_was_down(
        fresh_nats_server: EmbeddedNats, tmp_path: Path, logwatch: LogWatch) -> None:
    """The projector is down during the crash and the new writes go past its old
    checkpoint before it starts: the recorded last event (sequence and digest) no longer
    matches the stream's, so it rebuilds."""
    srv = fresh_nats_server
    back = asyncio.Event()

    async def reconnected() -> None:
        back.set()

    nc = await srv.endpoint.connect(max_reconnect_attempts=-1, reconnected_cb=reconnected)
    try:
        stream = "EVOVER" + new_id()[:6].upper()
        store = EventStore(nc, EventStreamSpec(name=stream))
        await store.setup()
        thread, _ = await create_thread(store, "u1")
        saved = [await save_message(store, "u1", thread, i) for i in range(100)]
        config = ProjectorConfig(db_path=tmp_path / "views.duckdb", stream=stream)
        async with running(config, nc, srv) as p:
            await p.wait_for(saved[-1][1], timeout=30)

        srv.stop()
        truncate_tail(srv, stream, keep=0.5)
        srv.start()
        await asyncio.wait_for(back.wait(), 30)
        end = (await store.js.stream_info(stream)).state.last_seq
        survivors = {mid for mid, seq in saved if seq <= end}
        new = [await save_message(store, "u1", thread, 1000 + i) for i in range(100)]
        assert new[-1][1] > saved[-1][1]  # past the old checkpoint: last < checkpoint is false

        async with running(config, nc, srv) as p:
            assert any("another event at sequence" in m for m in rebuild_lines(logwatch))
            await p.wait_for(new[-1][1], timeout=30)
            assert message_ids(p, thread) == survivors | {mid for mid, _ in new}
    finally:
        await nc.close()


async def test_a_nats_error_during_the_rebuild_is_retried_not_the_end(
        nc: NATS, nats_server: EmbeddedNats, tmp_path: Path, logwatch: LogWatch,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Reproduction: NATS unreachable for a moment while a recreated stream's rebuild
    read the stream's facts stopped the projector for good."""
    from nats.errors import NoRespondersError

    from projections import recovery

    stream = "EVRBERR" + new_id()[:6].upper()
    store = EventStore(nc, EventStreamSpec(name=stream))
    await store.setup()
    real = recovery.stream_facts
    failed: list[bool] = []

    async def flaky(*args: object, **kwargs: object) -> recovery.StreamFacts:
        if any(r.levelno == logging.WARNING and REBUILD in r.getMessage()
               for r in logwatch.records) and not failed:
            failed.append(True)  # the rebuild's own read, once
            raise NoRespondersError
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    try:
        thread, _ = await create_thread(store, "u1")
        old = [await save_message(store, "u1", thread, i) for i in range(5)]
        config = ProjectorConfig(db_path=tmp_path / "views.duckdb", stream=stream,
                                 stream_check_s=0.5)
        async with running(config, nc, nats_server) as p:
            await p.wait_for(old[-1][1], timeout=30)
            monkeypatch.setattr(recovery, "stream_facts", flaky)
            await nc.jetstream().delete_stream(stream)
            await store.setup()
            thread2, _ = await create_thread(store, "u1")
            new = [await save_message(store, "u1", thread2, i) for i in range(3)]
            await logwatch.wait_for("was recreated", 1, timeout=30)
            await logwatch.wait_for("projector feed unavailable", 1, timeout=30)
            await p.wait_for(new[-1][1], timeout=30)
            assert failed  # the rebuild met the error, and was retried
            assert message_ids(p, thread) == set()
            assert message_ids(p, thread2) == {mid for mid, _ in new}
            assert p.health().state == "running", p.health()
    finally:
        await nc.jetstream().delete_stream(stream)
