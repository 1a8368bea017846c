"""Which canvases a thread holds: ``thread_id -> canvas ids``, from the log.

Canvases are their own aggregates, so a thread's events do not list them. The directory
reads only the ``events.canvas.*.canvas_created`` subjects (one small event per canvas)
and remembers how far it has read: each lookup reads just the creations appended since
the last one (usually none: one stream-info call). Canvases created by this process are
added at once.
"""

from __future__ import annotations

from events import EventStore, RecordedEvent
from events.canvas_events import CanvasCreated
from events.subject_index import SubjectIndex

CREATED_SUBJECT = "events.canvas.*.canvas_created"


class CanvasDirectory:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._by_thread: dict[str, list[str]] = {}
        self._index = SubjectIndex(store, CREATED_SUBJECT, self._fold)

    def _fold(self, rec: RecordedEvent) -> None:
        ev = rec.event
        if isinstance(ev, CanvasCreated):
            self.add(ev.thread_id, ev.canvas_id)

    def add(self, thread_id: str, canvas_id: str) -> None:
        ids = self._by_thread.setdefault(thread_id, [])
        if canvas_id not in ids:
            ids.append(canvas_id)

    async def canvases_of(self, thread_id: str) -> list[str]:
        """Canvas ids of ``thread_id`` in creation order (empty if none)."""
        await self._index.refresh()
        return list(self._by_thread.get(thread_id, []))

    def forget_thread(self, thread_id: str) -> None:
        self._by_thread.pop(thread_id, None)
