"""A thread deleted in the same batch as its content: the content never reaches a view."""

from __future__ import annotations

from pathlib import Path

from nats.aio.client import Client as NATS

from events import Aggregate, EventStore, ThreadDeleted
from projections.projector import (
    Projector,
    ProjectorConfig,
    _without_content_of_deleted_threads,
    run_until_caught_up,
)
from threadlog.embedded_nats import EmbeddedNats

from .factories import create_thread, save_message


def test_only_the_deleted_threads_events_before_the_tombstone_are_dropped() -> None:
    items = [(1, b"events.thread.T1.thread_created", b"a"),
             (2, b"events.thread.T10.message_saved", b"b"),
             (3, b"events.thread.T1.message_saved", b"c"),
             (4, b"events.canvas.C1.canvas_edited", b"d"),
             (5, b"events.thread.T1.thread_deleted", b"e"),
             (6, b"events.thread.T1.message_saved", b"f")]
    assert [seq for seq, _, _ in _without_content_of_deleted_threads(items)] == [2, 4, 5, 6]
    assert _without_content_of_deleted_threads(items[:4]) == items[:4]


async def test_content_deleted_in_the_same_batch_leaves_no_row(
        store: EventStore, nc: NATS, nats_server: EmbeddedNats, tmp_path: Path) -> None:
    kept, _ = await create_thread(store, "u1")
    await save_message(store, "u1", kept, 0, text="stays")
    gone, _ = await create_thread(store, "u1")
    await save_message(store, "u1", gone, 0, text="secret")
    await store.append(Aggregate.thread(gone), [ThreadDeleted(thread_id=gone)], user_id="u1")
    p = Projector(ProjectorConfig(db_path=tmp_path / "v.duckdb", stream=store.stream),
                  nc, nats_server.endpoint)
    await run_until_caught_up(p)  # one batch: the log was not purged
    cur = p.cursor()
    threads = cur.execute("SELECT thread_id FROM threads ORDER BY 1").fetchall()
    texts = cur.execute("SELECT text FROM messages").fetchall()
    await p.close()
    assert threads == [(kept,)] and texts == [("stays",)]
