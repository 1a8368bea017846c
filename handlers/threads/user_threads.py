"""Which threads a user has: ``user_id -> thread ids``, from ``thread_created`` events.

Kept by a :class:`SubjectIndex` over ``events.thread.*.thread_created`` (one small event
per thread), so deleting a user's data does not depend on the projector being up. A
deleted thread keeps only its tombstone in the log, so it drops out after a restart.
"""

from __future__ import annotations

from events import EventStore, RecordedEvent, ThreadCreated
from events.subject_index import SubjectIndex

CREATED_SUBJECT = "events.thread.*.thread_created"


class UserThreads:
    def __init__(self, store: EventStore) -> None:
        self._by_user: dict[str, list[str]] = {}
        self._index = SubjectIndex(store, CREATED_SUBJECT, self._fold)

    def _fold(self, rec: RecordedEvent) -> None:
        ev = rec.event
        if isinstance(ev, ThreadCreated) and ev.user_id is not None:
            ids = self._by_user.setdefault(ev.user_id, [])
            if ev.thread_id not in ids:
                ids.append(ev.thread_id)

    async def threads_of(self, user_id: str) -> list[str]:
        """Every thread ``user_id`` created (deleted ones included until a restart)."""
        await self._index.refresh()
        return list(self._by_user.get(user_id, []))
