"""Reading and appending a work item's events (the journal) on the event store.

Guarantees: :func:`append` checks the expected version (the state's ``version``), so an
append made from a stale state raises :class:`ConcurrencyError` and changes nothing; the
caller re-reads (:func:`load`) and decides again. Its ``Nats-Msg-Id`` is derived from
``step`` (which names the attempt and the delivery), so re-sending the same append after
a lost acknowledgement is a duplicate, not a second event.

Failure modes: :class:`UnknownEventType`/:class:`ValidationFailed` for an event this code
cannot decode; :class:`Unavailable` when the server does not answer (the append may have
landed: the next :func:`load` shows it).
"""

from __future__ import annotations

from nats.js.errors import NotFoundError

from events.catalogue import Event
from events.envelope import RecordedEvent
from events.store import EventStore
from events.work_events import work_aggregate
from scheduler.workpool.status import WorkState, fold


async def load(store: EventStore, work_id: str) -> WorkState | None:
    """The item's current state, None if unknown.

    Read message by message from the stream leader (``next_by_subj``: read-after-write
    coherent, one round trip per event plus one; an item has a handful of events), not
    through :meth:`EventStore.read`, whose ordered consumer per call costs a consumer
    create/delete each (measured: ~29 items/s, and the account's consumer limit under
    load)."""
    subject = work_aggregate(work_id).filter
    events: list[tuple[int, Event]] = []
    seq = 1
    while True:
        try:
            msg = await store.js.get_msg(store.stream, seq=seq, subject=subject, next=True)
        except NotFoundError:
            break
        seq = int(msg.seq or 0)
        events.append((seq, RecordedEvent.from_raw(seq, msg.subject or "", msg.data or b"").event))
        seq += 1
    return fold(events)


async def append(store: EventStore, state: WorkState, event: Event, *, step: str) -> WorkState:
    """Append ``event`` expecting ``state.version``; return the state after it."""
    res = await store.append(work_aggregate(state.work_id), [event], expected=state.version,
                             command_id=f"work-{state.work_id}-{step}")
    return state.apply(event, res.last_seq)
