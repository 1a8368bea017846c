"""The command handlers keep serving when the projector's DuckDB file is damaged or
cannot be opened: a damaged file is moved aside and rebuilt; a file held by another
process leaves queries answering ``unavailable`` with the reason until it is free."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from events import ThreadlogError
from tests.conftest import LogWatch, RuntimeFactory
from threadlog.embedded_nats import EmbeddedNats
from threadlog.parts import projector_part
from threadlog.settings import Settings


@pytest.fixture
def logwatch() -> Iterator[LogWatch]:
    watch = LogWatch()
    logger = logging.getLogger("projections")
    logger.addHandler(watch)
    yield watch
    logger.removeHandler(watch)


def duckdb_path(nats_server: EmbeddedNats, tmp_path: Path) -> Path:
    """Where ``runtime_factory``'s projector keeps its file."""
    return Settings(nats_urls=[nats_server.url], data_dir=tmp_path).duckdb_path


async def test_a_garbage_file_does_not_stop_the_handlers(
        runtime_factory: RuntimeFactory, nats_server: EmbeddedNats, tmp_path: Path,
        logwatch: LogWatch) -> None:
    db = duckdb_path(nats_server, tmp_path)
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(b"garbage, not a database\n" * 5000)
    async with runtime_factory(extra_parts=[projector_part]) as rt:
        client = rt.client("u1")
        created = await client.create_thread(title="still served")
        assert created.seq is not None
        listed = await client.query("query.threads.list", min_seq=created.seq)
        assert [t["thread_id"] for t in listed.value["items"]] == [
            created.value["thread_id"]]
        assert rt.parts["projector"].health().state == "running"
    assert list(db.parent.glob(f"{db.name}.damaged-*"))
    assert any("is damaged" in r.getMessage() for r in logwatch.records)


async def test_queries_answer_unavailable_while_the_file_is_held_elsewhere(
        runtime_factory: RuntimeFactory, nats_server: EmbeddedNats, tmp_path: Path,
        logwatch: LogWatch) -> None:
    db = duckdb_path(nats_server, tmp_path)
    db.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(  # another process holds DuckDB's lock on the file
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
         "print('held', flush=True); sys.stdin.read()", str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        async with runtime_factory(extra_parts=[projector_part]) as rt:
            client = rt.client("u1")
            created = await client.create_thread(title="served without projections")
            assert created.seq is not None
            projector = rt.parts["projector"]
            assert projector.health().state == "unavailable"
            with pytest.raises(ThreadlogError) as err:
                await client.query("query.threads.list")
            assert err.value.code == "unavailable"
            assert "lock" in err.value.details["reason"].lower()
            status = await client.query("query.status")
            assert status.value["projector"]["state"] == "unavailable"

            assert holder.stdin is not None
            holder.stdin.close()  # the fault is gone
            assert holder.wait(10) == 0
            await logwatch.wait_for("resumed", 1, timeout=20)
            listed = await client.query("query.threads.list", min_seq=created.seq)
            assert [t["thread_id"] for t in listed.value["items"]] == [
                created.value["thread_id"]]
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
