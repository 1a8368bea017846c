"""What one delivery of an item's WORK message does, decided from the item's log alone.

A pure function (no I/O), so every rule is visible in one place:

======================================  =============================================
state                                   action
======================================  =============================================
unknown item                            ``drop`` (ack: nothing to do)
finished, no completion to run          ``drop``
finished (canceled), completion unowned ``claim`` (then ``complete``)
finished, completion owned by me or by  ``complete`` (run ``on_complete``, record it,
an earlier delivery of my message       ack)
running, owned by an earlier delivery   ``abandon`` (record the lost attempt as failed,
of my message (its worker died)         then decide again)
owned by a later delivery of my message ``stand_down`` (neither ack nor nak: the later
                                        delivery owns the message now)
owned by another message                ``drop`` (the owner is unacked: the server
                                        redelivers it if its worker dies)
pending, due later                      ``schedule`` (a scheduled message at the due
                                        time, then ack this one)
pending, due                            ``start`` (record the attempt, run it)
======================================  =============================================

Guarantees: at most one delivery can act on a step, because ``start`` and ``claim`` are
appends with an expected version (the loser re-reads and lands in ``drop``). A finished
item is never started again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from scheduler.workpool.status import WorkState

Action = Literal["drop", "stand_down", "schedule", "start", "abandon", "claim", "complete"]
DUE_TOLERANCE_S = 0.05
"""A delivery this close to its due time runs now (clock granularity, not a wait)."""


def decide(state: WorkState | None, seq: int, delivery: int, now: datetime) -> Action:
    """The action of delivery ``delivery`` of WORK message ``seq`` at ``now``."""
    if state is None:
        return "drop"
    if state.phase == "finished":
        if not state.needs_completion:
            return "drop"
        if state.owner_seq is None:
            return "claim"
        return _owned(state, seq, delivery, mine="complete", earlier="complete")
    if state.phase == "running":
        return _owned(state, seq, delivery, mine="stand_down", earlier="abandon")
    due = state.due_at
    if due is not None and (due - now).total_seconds() > DUE_TOLERANCE_S:
        return "schedule"
    return "start"


def _owned(state: WorkState, seq: int, delivery: int, *, mine: Action,
           earlier: Action) -> Action:
    if state.owner_seq != seq:
        return "drop"
    if state.owner_delivery == delivery:
        return mine
    if state.owner_delivery < delivery:
        return earlier
    return "stand_down"
