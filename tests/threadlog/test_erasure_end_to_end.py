"""Erasure that reaches the disk, end to end: after ``cmd.thread.delete`` (and the
projector's applying its tombstone), a unique marker from the deleted thread is in no
file under the nats-server store dir (message blocks, KV buckets) and in neither the
DuckDB file nor its WAL; the other thread's marker is still there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from tests.handlers.threads.test_erasure_nats import files_with
from threadlog.embedded_nats import EmbeddedNats
from threadlog.parts import serve_parts
from threadlog.runtime import running
from threadlog.settings import Settings


@pytest.fixture
def synced_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A server of this test's own that writes every acknowledged message to disk, so the
    precondition (the marker is on disk before the delete) holds without waiting."""
    srv = EmbeddedNats(tmp_path / "nats", sync_interval="always").start()
    yield srv
    srv.stop()


async def test_a_deleted_threads_content_is_in_no_file_of_nats_or_duckdb(
        synced_server: EmbeddedNats, tmp_path: Path) -> None:
    gone, kept = f"MARK-{uuid4().hex}", f"MARK-{uuid4().hex}"
    data = tmp_path / "data"
    settings = Settings(nats_urls=[synced_server.url], nats_creds=synced_server.service_creds,
                        data_dir=data)
    async with running(settings, extra_parts=serve_parts()) as rt:
        alice = rt.client("alice")
        doomed = (await alice.create_thread(title=f"title {gone}")).value["thread_id"]
        other = (await alice.create_thread(title="stays")).value["thread_id"]
        await alice.save_message(doomed, "user", f"secret {gone}")
        saved = await alice.save_message(other, "user", f"keeps {kept}")
        projector = rt.parts["projector"]
        await projector.wait_for(saved.seq, 10)
        assert files_with(synced_server.store_dir, gone), "precondition: on the NATS disk"
        assert files_with(data, gone), "precondition: in the DuckDB file or WAL"

        deleted = await alice.delete_thread(doomed)
        assert deleted.seq is not None
        await projector.wait_erased(deleted.seq, 20)
        assert files_with(synced_server.store_dir, gone) == []
        assert files_with(data, gone) == []
        assert files_with(synced_server.store_dir, kept)
        rows = await rt.client("ops").query("ops.sql", sql="SELECT text FROM messages")
        assert any(kept in (r[0] or "") for r in rows.value["rows"])
