"""The ``rejected_events`` view: the events the projector could not decode or apply.

One row per poison event (invariant 11: quarantined, never silent), written in the same
transaction as this view's checkpoint. The projector fills it from the batch's
rejections (:mod:`projections.screen` and the bisection fallback in
:mod:`projections.projector`), not from an event type: ``handles`` is empty and
``takes_rejections`` is set. Columns: ``seq`` and ``subject`` of the event; ``type``, the
subject's last token, NULL when the catalogue does not know it; ``error``; ``raw_prefix``,
the first :data:`~projections.screen.RAW_PREFIX` bytes decoded as UTF-8 with invalid
bytes escaped (``\\xNN``); ``raw_bytes``, the payload's length; ``stored_at``, when the
stream stored the event (NULL if it has since been purged).

Deterministic: a rebuild rejects the same events with the same errors, so this table too
equals a clean rebuild's. The wall-clock moment of a rejection is in the projector's log
(``logging.error``), not here: a wall-clock column would differ after every rebuild.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, ClassVar

import duckdb

from projections.screen import Rejection
from projections.tables import KeyedRows, Table
from projections.view import Envelope, View

REJECTED = Table(
    "rejected_events",
    {"seq": "BIGINT", "subject": "VARCHAR", "type": "VARCHAR", "error": "VARCHAR",
     "raw_prefix": "VARCHAR", "raw_bytes": "BIGINT", "stored_at": "TIMESTAMPTZ"},
    key=("seq",),
)


class RejectedBatch:
    def __init__(self) -> None:
        self.rows = KeyedRows(REJECTED, ())

    def add(self, seq: int, env: Envelope) -> None:
        self.rows.insert(seq, env)

    def add_rejection(self, rejection: Rejection, stored_at: str | None) -> None:
        row: dict[str, Any] = {**asdict(rejection), "stored_at": stored_at}
        self.rows.insert(rejection.seq, row)

    def flush(self, con: duckdb.DuckDBPyConnection, *, replace: bool = False) -> None:
        self.rows.flush(con, replace=replace)


class RejectedEventsView(View):
    name: ClassVar[str] = "rejected_events"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[Table, ...]] = (REJECTED,)
    handles: ClassVar[frozenset[str]] = frozenset()
    takes_rejections: ClassVar[bool] = True

    def new_batch(self) -> RejectedBatch:
        return RejectedBatch()
