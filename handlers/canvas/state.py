"""The write-side state of a canvas, folded from its events, and a cache of it.

``CanvasState`` holds the current document, the version (edit count), the stream
sequence of the last event (the append's expected version), per-element sizes (so the
document size limit costs O(touched) per edit), the :class:`EditIndex`, recent command
ids (to answer a re-sent command) and in-memory snapshots.

Snapshots: every ``SNAPSHOT_EVERY`` edits, and after any edit that changed more than
elements, the state keeps the document at that version. Since stored elements are never
mutated (``patching`` is copy-on-write), a snapshot is a shallow copy of the elements
map. ``document_at(N)`` starts from the nearest snapshot at or below N and re-applies the
recorded after-images of the edits up to N: O(SNAPSHOT_EVERY), no log read. Snapshots
are not persisted: loading a canvas replays its events once (about 20-40k edits/s).

``CanvasStateCache`` catches a cached state up incrementally (events after its sequence),
so an edit costs O(1) amortised, not a replay.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import events.canvas_events  # noqa: F401  (registers the canvas event types)
from events import Aggregate, EventStore, RecordedEvent
from events.canvas_events import CanvasCreated, CanvasEdited
from events.catalogue import Event
from handlers.canvas.edit_index import EditIndex, EditRecord
from handlers.canvas.patching import PatchOutcome, apply_patch
from handlers.canvas.schema import element_size
from handlers.state_cache import AggregateStateCache

SNAPSHOT_EVERY = 1_000
MAX_REMEMBERED_COMMANDS = 1_000


def canvas_aggregate(canvas_id: str) -> Aggregate:
    return Aggregate("canvas", canvas_id)


@dataclass
class CanvasState:
    canvas_id: str
    exists: bool = False
    thread_id: str | None = None
    user_id: str | None = None
    title: str | None = None
    document: dict[str, Any] = field(default_factory=lambda: {"elements": {}})
    version: int = 0
    seq: int = 0
    sizes: dict[str, int] = field(default_factory=dict)
    other_bytes: int = 0
    index: EditIndex = field(default_factory=EditIndex)
    snapshots: dict[int, dict[str, Any]] = field(default_factory=dict)
    commands: OrderedDict[str, tuple[int, int]] = field(default_factory=OrderedDict)
    """Command id -> (the version its event created (0: the creation), its sequence)."""

    @property
    def aggregate(self) -> Aggregate:
        return canvas_aggregate(self.canvas_id)

    @property
    def document_bytes(self) -> int:
        return sum(self.sizes.values()) + self.other_bytes

    # ------------------------------------------------------------------ folding
    def apply(self, event: Event, seq: int, command_id: str | None = None,
              at: datetime | None = None, outcome: PatchOutcome | None = None) -> None:
        """Fold one event. ``outcome`` is the already computed patch result of our own
        edit (skips re-applying the ops)."""
        if isinstance(event, CanvasCreated):
            self.exists = True
            self.thread_id, self.user_id, self.title = event.thread_id, event.user_id, event.title
            self.document = {"elements": {}, **event.document}
            self._resize_all()
            self.snapshots[0] = self._snapshot()
            self._remember(command_id, 0, seq)
        elif isinstance(event, CanvasEdited):
            if event.version != self.version + 1:
                raise ValueError(f"canvas {self.canvas_id!r}: edit {event.version} folded "
                                 f"at version {self.version}")
            if outcome is None:
                outcome = apply_patch(self.document, event.ops)
            self.document = outcome.document
            if outcome.structural:
                self._resize_all()
            else:
                for eid in outcome.touched:
                    el = outcome.after[eid]
                    if el is None:
                        self.sizes.pop(eid, None)
                    else:
                        self.sizes[eid] = element_size(el)
            self.version = event.version
            self.index.add(EditRecord(
                event.version, seq, event.base_version, list(event.touched), event.summary,
                event.author, event.author_kind, event.message_id, event.snippet,
                event.reverts, at, command_id))
            if outcome.structural or self.version % SNAPSHOT_EVERY == 0:
                self.snapshots[self.version] = self._snapshot()
            self._remember(command_id, self.version, seq)
        self.seq = seq

    def apply_recorded(self, records: list[RecordedEvent]) -> None:
        for rec in records:
            self.apply(rec.event, rec.seq, rec.envelope.causation_id, rec.envelope.occurred_at)

    def _remember(self, command_id: str | None, version: int, seq: int) -> None:
        if command_id is None:
            return
        self.commands[command_id] = (version, seq)
        self.commands.move_to_end(command_id)
        while len(self.commands) > MAX_REMEMBERED_COMMANDS:
            self.commands.popitem(last=False)

    def _snapshot(self) -> dict[str, Any]:
        return {**self.document, "elements": dict(self.document.get("elements", {}))}

    def _resize_all(self) -> None:
        elements = self.document.get("elements", {})
        self.sizes = {eid: element_size(el) for eid, el in elements.items()}
        self.other_bytes = element_size({k: v for k, v in self.document.items()
                                         if k != "elements"})

    # ------------------------------------------------------------------ reading
    def document_at(self, version: int) -> dict[str, Any]:
        """The document as it was at ``version`` (0 <= version <= current).

        Raises ``ValueError`` outside that range (callers check first)."""
        if not 0 <= version <= self.version:
            raise ValueError(f"version {version} outside 0..{self.version}")
        if version == self.version:
            return self.document
        base = max(v for v in self.snapshots if v <= version)
        snap = self.snapshots[base]
        doc = {**snap, "elements": dict(snap.get("elements", {}))}
        elements = doc["elements"]
        for v in range(base + 1, version + 1):
            rec = self.index.records[v - 1]
            after = rec.snippet.get("after", {})
            for eid in rec.touched:
                el = after.get(eid)
                if el is None:
                    elements.pop(eid, None)
                else:
                    elements[eid] = el
        return doc


class CanvasStateCache(AggregateStateCache[CanvasState]):
    """Canvas states by canvas id (see :class:`AggregateStateCache`)."""

    def __init__(self, store: EventStore, capacity: int = 1_000) -> None:
        super().__init__(store, CanvasState, lambda st: st.seq, capacity)
