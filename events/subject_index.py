"""An in-memory index kept up to date from one subject filter of the log.

``SubjectIndex(store, "events.thread.*.thread_created", fold)`` replays only the matching
events, remembers how far it has read, and on each ``refresh()`` reads just what was
appended since (usually nothing: one stream-info call). Used for small, rarely changing
lookups that no aggregate holds: a thread's canvases, a user's threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from events.envelope import RecordedEvent
from events.store import EventStore


class SubjectIndex:
    def __init__(self, store: EventStore, subject: str,
                 fold: Callable[[RecordedEvent], None]) -> None:
        self.store = store
        self.subject = subject
        self.fold = fold
        self._read_to = 0
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        """Fold every matching event appended since the last refresh (in stream order)."""
        async with self._lock:
            end = await self.store.last_seq()
            if end <= self._read_to:
                return
            async for rec in self.store.replay(self._read_to + 1, subject=self.subject,
                                               until_seq=end):
                self.fold(rec)
            self._read_to = end
