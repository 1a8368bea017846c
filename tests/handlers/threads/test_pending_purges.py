"""What is pending is read from the bucket itself, not from the watcher's marker.

A full-suite run once answered ``deletion.pending`` with ``done: true`` while a purge was
still running: nats-py's KV watcher puts its "initial values are in" marker when the
consumer reports nothing undelivered and the client has processed nothing yet, which
under load happens while the record is delivered but not yet processed. The watcher
below delivers exactly that order (marker first, then the record), deterministically.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from events import new_id
from handlers.threads.pending_purges import PendingPurges, thread_key
from tests.events.kv_watchers import MarkerFirst


@pytest.fixture
async def purges(nc: NATS) -> AsyncIterator[PendingPurges]:
    bucket = "purges" + new_id()[:8]
    p = await PendingPurges.open(nc.jetstream(), bucket)
    yield p
    await nc.jetstream().delete_key_value(bucket)


async def test_a_record_the_watcher_has_not_processed_yet_is_still_pending(
        purges: PendingPurges, monkeypatch: pytest.MonkeyPatch) -> None:
    key = thread_key("u1", "t1")
    await purges.add(key, {"kind": "thread", "thread_id": "t1"})
    real_watch = purges.kv.watch

    async def watch(keys: str, **kw: Any) -> Any:
        return MarkerFirst(await real_watch("nothing.matches.this", **kw))

    monkeypatch.setattr(purges.kv, "watch", watch)
    assert list(await purges.wait("u1.>", 0.3)) == [key]
    assert list(await purges.records("u1.>")) == [key]


async def test_wait_ends_when_the_purge_is_done_and_reads_deletes(
        purges: PendingPurges) -> None:
    key = thread_key("u2", "t1")
    await purges.add(key, {"kind": "thread", "thread_id": "t1"})
    await purges.add(thread_key("u3", "t9"), {"kind": "thread", "thread_id": "t9"})
    waiting = asyncio.ensure_future(purges.wait("u2.>", 10))
    await purges.kv.delete(key)
    assert await asyncio.wait_for(waiting, 10) == {}
    assert list(await purges.records()) == [thread_key("u3", "t9")]
