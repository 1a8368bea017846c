"""An LRU of write-side aggregate states, with one lock per aggregate.

A state is loaded from the log on a miss and caught up incrementally after a conflict
(only the events after its position), so a decision costs O(new events), not a replay.
The per-aggregate lock serialises decisions in this process; other processes are kept
honest by the store's expected-version check. Reads (queries) catch a state up without
the lock, so folding is idempotent by sequence: events at or below a state's position are
skipped, whoever read them (two overlapping catch-ups, or a catch-up that read a writer's
append before the writer folded it, fold each event once). A cached *absence* is not trusted (see
:meth:`AggregateStateCache.get`): with several handler processes, an aggregate another
process created is found by the next command, never answered ``not_found`` from a stale
cache.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from events import Aggregate, EventStore, RecordedEvent


class FoldedState(Protocol):
    @property
    def aggregate(self) -> Aggregate: ...

    def apply_recorded(self, events: list[RecordedEvent]) -> None: ...


S = TypeVar("S", bound=FoldedState)


class AggregateStateCache(Generic[S]):
    """``new(key)`` makes an empty state; ``position(state)`` is the stream sequence of
    the last event folded into it."""

    def __init__(self, store: EventStore, new: Callable[[str], S],
                 position: Callable[[S], int], capacity: int) -> None:
        self.store = store
        self.capacity = capacity
        self._new = new
        self._position = position
        self._states: OrderedDict[str, S] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, key: str) -> asyncio.Lock:
        lk = self._locks.get(key)
        if lk is None:
            lk = self._locks[key] = asyncio.Lock()
        return lk

    async def get(self, key: str) -> S:
        """The cached state, loading it from the log on a miss. An absent aggregate is
        never cached as the truth: another process may have created it since, so a state
        with no events is read again (one read of the log) before each decision."""
        st = self._states.get(key)
        if st is not None and self._position(st) == 0:
            return await self.refresh(key)
        if st is None:
            fresh = self._new(key)
            records = await self.store.read(fresh.aggregate)
            st = self._states.get(key)  # another load may have finished while we read
            if st is None:
                st = fresh
                self._states[key] = st
            self.fold(st, records)
            while len(self._states) > self.capacity:
                old, _ = self._states.popitem(last=False)
                lk = self._locks.get(old)
                if lk is not None and not lk.locked():
                    del self._locks[old]
        else:
            self._states.move_to_end(key)
        return st

    async def refresh(self, key: str) -> S:
        """The state caught up with events appended by others (after a conflict, or
        before deciding on an aggregate other processes write): a cached state reads only
        the events after its position; a missing one is loaded (one read either way)."""
        st = self._states.get(key)
        if st is None:
            return await self.get(key)
        self._states.move_to_end(key)
        self.fold(st, await self.store.read(st.aggregate, after_seq=self._position(st)))
        return st

    def fold(self, state: S, records: list[RecordedEvent]) -> None:
        """Fold the records after ``state``'s position (those at or below it were folded
        already, by an overlapping catch-up or by the writer that appended them)."""
        pos = self._position(state)
        fresh = [r for r in records if r.seq > pos]
        if fresh:
            state.apply_recorded(fresh)

    def folded(self, state: S, seq: int) -> bool:
        """Whether the event at ``seq`` is already in ``state`` (a lock-free catch-up
        read it between our append and our fold)."""
        return self._position(state) >= seq

    def position(self, state: S) -> int:
        """The stream sequence of the last event folded into ``state`` (0: none): the
        expected version of the next append."""
        return self._position(state)

    def snapshot(self) -> dict[str, S]:
        """The cached states by key (a copy of the mapping; the states are live)."""
        return dict(self._states)

    def cached(self, key: str) -> S | None:
        """The cached state, if any, without loading it or touching the LRU order."""
        return self._states.get(key)

    def forget(self, key: str) -> None:
        self._states.pop(key, None)
