"""The projector's wait for the next batch never drops events the feed handed over.

Seen as a message left ``pending`` in the ``messages`` view although its
``message_finalized`` was in the log (1 generation in ~100 under load): the wait for
the next batch is cut short each time a commit completes, cancelling the feed's
``take``; in Python 3.11 ``asyncio.wait_for`` can swallow a cancellation whose wait had
just completed, so ``take`` popped its events and returned them to a caller that
discarded them. The fake feed below makes that interleaving deterministic.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

from events import EventStore
from projections.projector import Projector, ProjectorConfig
from threadlog.embedded_nats import EmbeddedNats


class FeedFinishingAsCancelled:
    """A feed whose ``take`` completes with its items even though it was cancelled (what
    ``wait_for`` does when its inner wait finished in the same loop iteration)."""

    pending = 0
    buffered = 0

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def take(self, max_items: int) -> list[Any]:
        self.started.set()
        with contextlib.suppress(asyncio.CancelledError):  # the swallowed cancellation
            await self.release.wait()
        out, self.items = self.items, []
        return out


async def test_a_take_that_finishes_as_it_is_cancelled_keeps_its_events(
        store: EventStore, nc: NATS, nats_server: EmbeddedNats, tmp_path: Path) -> None:
    p = Projector(ProjectorConfig(db_path=tmp_path / "v.duckdb", stream=store.stream), nc,
                  nats_server.endpoint)
    feed = FeedFinishingAsCancelled([(1, "events.thread.t.x", b"{}")])
    inflight: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def commit_finishes() -> None:
        await feed.started.wait()
        inflight.set_result(None)  # the commit in flight completes: _take is woken

    done = asyncio.ensure_future(commit_finishes())
    got = await asyncio.wait_for(p._take(feed, inflight), 5)  # type: ignore[arg-type]
    await done
    assert got == [(1, "events.thread.t.x", b"{}")]
