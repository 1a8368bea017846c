"""Failures are never silent: a write error (disk full) is logged at once with the
original error, shown by health and ``status``, retried with backoff and resumed when the
cause is gone; a damaged file is moved aside and rebuilt from the log; a file that cannot
be opened leaves the projector ``unavailable`` (queries say why) until it can."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from nats.aio.client import Client as NATS

from events import EventStore
from events.errors import Unavailable
from projections import admin
from projections import projector as projector_module
from projections.projector import Projector, ProjectorConfig
from projections.queries import QueryService
from projections.queries.models import MessagesGet
from tests.conftest import LogWatch
from tests.projections.factories import create_thread, message_ids, save_message
from tests.projections.factories import running_projector as running
from threadlog.embedded_nats import EmbeddedNats

DISK_FULL = "IO Error: Could not write file \"views.duckdb.wal\": No space left on device"


@pytest.fixture
def logwatch() -> Iterator[LogWatch]:
    watch = LogWatch()
    logger = logging.getLogger("projections")
    logger.addHandler(watch)
    yield watch
    logger.removeHandler(watch)


def errors(watch: LogWatch, needle: str) -> list[logging.LogRecord]:
    return [r for r in watch.records if r.levelno >= logging.ERROR and needle in r.getMessage()]


async def test_disk_full_is_logged_shown_retried_and_resumed(
        store: EventStore, nc: NATS, nats_server: EmbeddedNats, tmp_path: Path,
        logwatch: LogWatch, monkeypatch: pytest.MonkeyPatch) -> None:
    thread, _ = await create_thread(store, "u1")
    p = Projector(ProjectorConfig(db_path=tmp_path / "views.duckdb", stream=store.stream,
                                  retry_max_s=0.5), nc, nats_server.endpoint)
    await p.open()
    disk_full = True
    begin = Projector._begin

    def failing_begin(*args: Any, **kwargs: Any) -> bool:
        if disk_full:
            raise duckdb.IOException(DISK_FULL)
        return begin(*args, **kwargs)

    async with running(p):
        await p.wait_for((await nc.jetstream().stream_info(store.stream)).state.last_seq,
                         timeout=10)
        monkeypatch.setattr(Projector, "_begin", staticmethod(failing_begin))
        mid, seq = await save_message(store, "u1", thread, 0)

        await logwatch.wait_for("No space left on device", 1, timeout=10)  # at once
        (first,) = errors(logwatch, "No space left on device")[:1]
        assert "IOException" in first.getMessage()
        health = p.health()
        assert health.state == "retrying"
        assert health.last_error is not None and "No space left on device" in health.last_error
        assert health.since is not None and not health.healthy
        status = await p.status()
        assert status["projector"]["state"] == "retrying"
        assert "No space left on device" in status["projector"]["last_error"]
        assert status["lag"] >= 1 and p.checkpoint < seq

        await logwatch.wait_for("No space left on device", 3, timeout=10)  # retried
        disk_full = False  # space freed
        await p.wait_for(seq, timeout=15)
        assert mid in message_ids(p, thread)
        health = p.health()
        assert health.state == "running" and health.last_error is None
        assert any("resumed" in r.getMessage() for r in logwatch.records)
        # a later write goes through at once
        mid2, seq2 = await save_message(store, "u1", thread, 1)
        await p.wait_for(seq2, timeout=10)
        assert mid2 in message_ids(p, thread)


async def test_a_damaged_file_is_moved_aside_and_rebuilt(
        store: EventStore, nc: NATS, nats_server: EmbeddedNats, tmp_path: Path,
        logwatch: LogWatch) -> None:
    thread, _ = await create_thread(store, "u1")
    mid, seq = await save_message(store, "u1", thread, 0)
    db = tmp_path / "views.duckdb"
    db.write_bytes(b"this is not a duckdb file " * 4000)
    p = Projector(ProjectorConfig(db_path=db, stream=store.stream), nc, nats_server.endpoint)
    await p.open()
    async with running(p):
        await p.wait_for(seq, timeout=15)
        assert mid in message_ids(p, thread)
    aside = list(tmp_path.glob("views.duckdb.damaged-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes().startswith(b"this is not a duckdb file")
    assert errors(logwatch, "is damaged")


async def test_rebuild_into_a_directory_with_a_damaged_file(
        store: EventStore, nc: NATS, nats_server: EmbeddedNats, tmp_path: Path) -> None:
    thread, _ = await create_thread(store, "u1")
    _, seq = await save_message(store, "u1", thread, 0)
    db = tmp_path / "views.duckdb"
    db.write_bytes(b"\x00garbage" * 10_000)
    out = await admin.rebuild(nc, nats_server.endpoint, db, store.stream)
    assert out["checkpoint"] == seq
    assert list(tmp_path.glob("views.duckdb.damaged-*"))
    assert admin.offline_status(db)["checkpoint"] == seq


async def test_a_file_that_cannot_be_opened_makes_queries_unavailable_until_it_can(
        store: EventStore, nc: NATS, nats_server: EmbeddedNats, tmp_path: Path,
        logwatch: LogWatch, monkeypatch: pytest.MonkeyPatch) -> None:
    thread, _ = await create_thread(store, "u1")
    mid, seq = await save_message(store, "u1", thread, 0)
    readonly = True
    real_open = projector_module.open_database

    def open_database(path: str | Path, *, read_only: bool = False) -> Any:
        if readonly:
            raise duckdb.IOException(f'IO Error: Cannot open file "{path}": Read-only file '
                                     'system')
        return real_open(path, read_only=read_only)

    monkeypatch.setattr(projector_module, "open_database", open_database)
    p = Projector(ProjectorConfig(db_path=tmp_path / "views.duckdb", stream=store.stream,
                                  retry_max_s=0.5), nc, nats_server.endpoint)
    assert not await p.try_open()
    service = QueryService(p)
    try:
        async with running(p):
            health = p.health()
            assert health.state == "unavailable"
            assert health.last_error is not None and "Read-only file system" in health.last_error
            query = MessagesGet(user_id="u1", message_ids=[mid])
            reply = await service.execute("messages.get", query)
            assert not reply.ok and reply.error is not None
            assert reply.error.code == "unavailable"
            assert "Read-only file system" in reply.error.details["reason"]
            assert str(tmp_path) not in reply.error.details["reason"]  # users see no paths
            assert "views.duckdb" in reply.error.details["reason"]
            with pytest.raises(Unavailable):
                await p.wait_for(seq, timeout=5)
            status = await service.execute("status", query)
            assert status.ok and status.result["projector"]["state"] == "unavailable"
            assert str(tmp_path) not in status.result["projector"]["last_error"]
            ops = await service.execute("status", query, operators=True)
            assert str(tmp_path) in ops.result["projector"]["last_error"]
            await logwatch.wait_for("cannot be opened", 2, timeout=10)  # retried, logged

            readonly = False
            await logwatch.wait_for("resumed", 1, timeout=10)
            await p.wait_for(seq, timeout=10)
            reply = await service.execute("messages.get", MessagesGet(
                user_id="u1", message_ids=[mid], min_seq=seq))
            assert reply.ok, reply.error
            assert p.health().state == "running"
    finally:
        service.close()
