"""Operator overrides are loaded from the bucket itself, not from the watcher's marker.

nats-py's KV watcher can put its "initial values are in" marker before a delivered value
is processed (the same race ``tests/handlers/threads/test_pending_purges.py`` shows for
pending purges). A store that trusted the marker answered "no override" for a user who
had one, so that user got the defaults. The watcher below sends the marker first and
never the stored value, deterministically."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from events import new_id
from handlers.rate_limits.limits import Override
from handlers.rate_limits.store import RateLimitStore
from tests.events.kv_watchers import MarkerFirst


@pytest.fixture
async def bucket(nc: NATS) -> AsyncIterator[str]:
    name = "rl" + new_id()[:8]
    yield name
    await nc.jetstream().delete_key_value(name)


async def test_a_stored_override_is_in_although_the_watcher_marker_came_first(
        nc: NATS, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = await RateLimitStore.open(nc.jetstream(), bucket)
    await writer.set_override("ann", Override(messages_per_minute=7))
    await writer.set_override("bob", Override(tokens_per_minute=9))
    await writer.set_override("bob", None)  # deleted: not an override any more

    reader = await RateLimitStore.open(nc.jetstream(), bucket)
    real_watch = reader.kv.watch

    async def watch(keys: str, **kw: Any) -> Any:
        return MarkerFirst(await real_watch("nothing.matches.this", **kw))

    monkeypatch.setattr(reader.kv, "watch", watch)
    try:
        print("A", flush=True)
        await reader.watch_overrides(timeout=5)
        print("B", flush=True)
        ready = reader.ready.is_set()
        ann, bob = await reader.override("ann"), await reader.override("bob")
    finally:
        print("C", flush=True)
        await reader.close()
        print("D", flush=True)
    assert ready
    assert ann == Override(messages_per_minute=7)
    assert bob is None


async def test_changes_after_the_load_are_followed(nc: NATS, bucket: str) -> None:
    store = await RateLimitStore.open(nc.jetstream(), bucket)
    other = await RateLimitStore.open(nc.jetstream(), bucket)
    await other.set_override("cy", Override(messages_per_minute=3))
    await store.watch_overrides(timeout=5)
    try:
        assert await store.override("cy") == Override(messages_per_minute=3)
        await other.set_override("cy", None)
        # the deletion reaches the follower: wait on its state, bounded
        for _ in range(200):
            if "cy" not in store.overrides:
                break
            await store.kv.status()  # one round trip: lets the watcher's task run
        assert "cy" not in store.overrides
    finally:
        await store.close()


class SwallowsOneCancel:
    """A watcher whose wait drops the first cancellation, as Python 3.11's
    ``asyncio.wait_for`` (inside nats-py's ``updates``) does when the cancellation
    arrives as the wait completes."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.swallowed = False

    async def updates(self, timeout: float = 5.0) -> Any:
        try:
            await asyncio.sleep(timeout)
        except asyncio.CancelledError:
            if self.swallowed:
                raise
            self.swallowed = True
        return None

    async def stop(self) -> None:
        await self.real.stop()


async def test_close_ends_even_when_the_watch_drops_a_cancellation(
        nc: NATS, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reproduction: the runtime's shutdown waited for the follower's next change (its
    wait is an hour) because one cancellation was dropped."""
    store = await RateLimitStore.open(nc.jetstream(), bucket)
    real_watch = store.kv.watch
    watcher: list[SwallowsOneCancel] = []

    async def watch(keys: str, **kw: Any) -> Any:
        watcher.append(SwallowsOneCancel(await real_watch(keys, **kw)))
        return watcher[0]

    monkeypatch.setattr(store.kv, "watch", watch)
    await store.watch_overrides(timeout=5)
    await asyncio.wait_for(store.close(), 15)
    assert watcher[0].swallowed
