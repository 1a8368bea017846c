"""The ``usage`` view: one row per ``usage_recorded`` event (billing facts, no content).

``billing_period`` is the first day of the month, in UTC, of the call's ``at`` (or the
event's ``occurred_at`` when ``at`` is absent). Usage rows are never deleted by thread
deletion (invariant 8: billing records stay). A re-recorded ``call_id`` never reaches the
log twice (its event id derives from it), so rows are not deduplicated here.
"""

from __future__ import annotations

from typing import ClassVar

import duckdb

from projections.tables import AppendedRows, Table
from projections.view import Envelope, View
from projections.views.messages import TOKEN_KINDS

USAGE = Table(
    "usage",
    {
        "event_id": "VARCHAR", "call_id": "VARCHAR", "user_id": "VARCHAR",
        "thread_id": "VARCHAR", "agent_name": "VARCHAR", "model": "VARCHAR",
        "provider": "VARCHAR", "kind": "VARCHAR",
        **{k: "BIGINT" for k in TOKEN_KINDS},
        "cost": "DOUBLE", "at": "TIMESTAMPTZ", "billing_period": "DATE", "seq": "BIGINT",
    },
)


def billing_period(ts: str) -> str:
    """First day of the UTC month of an ISO 8601 timestamp, as ``YYYY-MM-01``."""
    if ts.endswith("Z") or ts.endswith("+00:00") or len(ts) <= 19:
        return ts[:7] + "-01"
    from datetime import UTC, datetime

    return datetime.fromisoformat(ts).astimezone(UTC).strftime("%Y-%m-01")


class UsageBatch:
    def __init__(self) -> None:
        self.rows = AppendedRows(USAGE)

    def add(self, seq: int, env: Envelope) -> None:
        d = env["data"]
        u = d.get("usage") or {}
        at = d.get("at") or env["occurred_at"]
        self.rows.rows.append({
            "event_id": env.get("event_id"), "call_id": d.get("call_id"),
            "user_id": d.get("user_id") or env.get("user_id"), "thread_id": d.get("thread_id"),
            "agent_name": d.get("agent_name"), "model": d.get("model"),
            "provider": d.get("provider"), "kind": d.get("kind", "completion"),
            **{k: u.get(k, 0) for k in TOKEN_KINDS},
            "cost": d.get("cost", 0.0), "at": at, "billing_period": billing_period(at),
            "seq": seq,
        })

    def flush(self, con: duckdb.DuckDBPyConnection, *, replace: bool = False) -> None:
        self.rows.flush(con)


class UsageView(View):
    name: ClassVar[str] = "usage"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[Table, ...]] = (USAGE,)
    handles: ClassVar[frozenset[str]] = frozenset({"usage_recorded"})

    def new_batch(self) -> UsageBatch:
        return UsageBatch()
