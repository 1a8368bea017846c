"""The ``usage`` view: one row per ``usage_recorded`` event (billing facts, no content).

``billing_period`` is the first day of the month, in UTC, of the call's ``at`` (or the
event's ``occurred_at`` when ``at`` is absent). Usage rows are never deleted by thread
deletion (invariant 8: billing records stay). A re-recorded ``call_id`` never reaches the
log twice (its event id derives from it), so rows are not deduplicated here.
``estimated`` is true for a call whose provider reported no usage (a stream without a
usage chunk): its token counts are a count of the text, not the provider's bill (false
for events written before the field existed).
"""

from __future__ import annotations

from typing import ClassVar

import duckdb

from projections.batch import Batch, Fields
from projections.tables import Table
from projections.view import SqlView
from projections.views.messages import TOKEN_KINDS

USAGE = Table(
    "usage",
    {
        "event_id": "VARCHAR", "call_id": "VARCHAR", "user_id": "VARCHAR",
        "thread_id": "VARCHAR", "agent_name": "VARCHAR", "model": "VARCHAR",
        "provider": "VARCHAR", "kind": "VARCHAR",
        **{k: "BIGINT" for k in TOKEN_KINDS},
        "cost": "DOUBLE", "at": "TIMESTAMPTZ", "billing_period": "DATE", "seq": "BIGINT",
        "estimated": "BOOLEAN",
    },
)
F = Fields(event_id="$.event_id", call_id="$.data.call_id", user_id="$.data.user_id",
           env_user="$.user_id", thread_id="$.data.thread_id", agent_name="$.data.agent_name",
           model="$.data.model", provider="$.data.provider", kind="$.data.kind",
           cost="$.data.cost", at="$.data.at", occurred_at="$.occurred_at",
           estimated="$.data.estimated", **{k: f"$.data.usage.{k}" for k in TOKEN_KINDS})
_ROW = ", ".join([
    F["event_id"], F["call_id"], f"coalesce({F['user_id']}, {F['env_user']})", F["thread_id"],
    F["agent_name"], F["model"], F["provider"], f"coalesce({F['kind']}, 'completion')",
    *(f"coalesce({F.cast(k, 'BIGINT')}, 0)" for k in TOKEN_KINDS),
    f"coalesce({F.cast('cost', 'DOUBLE')}, 0)", "ts",
    "CAST(date_trunc('month', CAST(ts AS TIMESTAMP)) AS DATE)", "seq",
    f"coalesce({F.cast('estimated', 'BOOLEAN')}, false)",
])


class UsageView(SqlView):
    name: ClassVar[str] = "usage"
    version: ClassVar[int] = 2
    """2: the ``estimated`` column."""
    tables: ClassVar[tuple[Table, ...]] = (USAGE,)
    handles: ClassVar[frozenset[str]] = frozenset({"usage_recorded"})

    def apply(self, con: duckdb.DuckDBPyConnection, batch: Batch, *,
              replace: bool = False) -> None:
        con.execute(f"""{USAGE.insert_verb(False)}
            SELECT {_ROW}
            FROM (SELECT seq, f,
                         CAST(coalesce({F['at']}, {F['occurred_at']}) AS TIMESTAMPTZ) AS ts
                  FROM (SELECT seq, {F.extract()} FROM {batch.source}
                        WHERE type = 'usage_recorded'))
        """)
