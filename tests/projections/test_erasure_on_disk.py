"""Deletion reaches the DuckDB file (invariant 8): once the projector has applied a
``thread_deleted`` and erased it on disk (``wait_erased``), no byte of the deleted content
is left in the database file or its WAL, while other threads stay queryable."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path

from nats.aio.client import Client as NATS

from events import Aggregate, EventStore, ThreadDeleted
from projections.projector import Projector, ProjectorConfig
from threadlog.embedded_nats import EmbeddedNats

from .factories import create_thread, save_message

USER = "u-erase"


def found_in(directory: Path, markers: list[str]) -> dict[str, list[str]]:
    """Which markers occur in the raw bytes of which file under ``directory``."""
    hits: dict[str, list[str]] = {}
    for f in sorted(directory.rglob("*")):
        if f.is_file():
            data = f.read_bytes()
            hits.update({f.name: [m for m in markers if m.encode() in data]})
    return {name: ms for name, ms in hits.items() if ms}


async def test_deleted_content_leaves_the_file_and_its_wal(
        store: EventStore, nc: NATS, nats_server: EmbeddedNats, tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    db = db_dir / "views.duckdb"
    p = Projector(ProjectorConfig(db_path=db, stream=store.stream, erasure_delay_s=0.05),
                  nc, nats_server.endpoint)
    await p.open()
    task = asyncio.create_task(p.run())
    try:
        markers: dict[str, list[str]] = {}
        last = 0
        for _ in range(4):
            thread, _ = await create_thread(store, USER)
            markers[thread] = [f"MARK-{uuid.uuid4()}" for _ in range(6)]
            for order, mark in enumerate(markers[thread]):
                _, last = await save_message(store, USER, thread, order,
                                             text=f"secret {mark} " + "filler " * 40)
        await p.wait_for(last, timeout=20)
        cur = p.cursor()
        cur.execute("CHECKPOINT")
        cur.close()
        gone, *kept = markers
        on_disk = found_in(db_dir, markers[gone])
        assert set(on_disk.get(db.name, [])) == set(markers[gone]), (
            f"precondition: the markers are in the main file before deleting: {on_disk}")

        # Reads (what the query service runs) go on while the file is compacted and
        # reopened: they wait for the swap and never see a closed connection.
        erased = threading.Event()

        def read_until_erased() -> int:
            answered = 0
            while not erased.is_set():
                with p.reading() as cur:
                    row = cur.execute("SELECT count(*) FROM messages WHERE thread_id = ?",
                                      [kept[0]]).fetchone()
                assert row == (len(markers[kept[0]]),)
                answered += 1
            return answered

        reader = asyncio.ensure_future(asyncio.to_thread(read_until_erased))
        r = await store.append(Aggregate.thread(gone), [ThreadDeleted(thread_id=gone)],
                               user_id=USER)
        try:
            await p.wait_erased(r.last_seq, timeout=30)
        finally:
            erased.set()
            answered = await reader
        assert answered > 0

        assert found_in(db_dir, markers[gone]) == {}
        status = await p.status()
        assert status["erasure_pending_seq"] is None and status["erased_seq"] >= r.last_seq
        cur = p.cursor()
        try:
            texts = " ".join(t for (t,) in cur.execute("SELECT text FROM messages").fetchall())
            assert cur.execute("SELECT count(*) FROM messages WHERE thread_id = ?",
                               [gone]).fetchone() == (0,)
        finally:
            cur.close()
        assert all(m in texts for t in kept for m in markers[t])
        # The projector goes on after the swap: new events still land.
        _, last = await save_message(store, USER, kept[0], 99, text="after erasure")
        await p.wait_for(last, timeout=20)
    finally:
        p.stop()
        await asyncio.wait_for(task, 15)
        await p.close()
    assert found_in(db_dir, markers[gone]) == {}
