"""Invoices of one billing period from the DuckDB ``usage`` view: one aggregate query.

The ``usage`` view (projections issue 3) has one row per usage event with ``user_id``,
``model``, the token kinds (``prompt_tokens``, ``completion_tokens``, ``total_tokens``,
``reasoning_tokens``, ``cached_input_tokens``, ``cache_write_tokens``), ``cost`` (USD)
and ``billing_period`` (DATE, first day of the month in UTC).

Guarantees
- One ``GROUP BY user_id, model`` scan of the period: 10M rows / 100k users in a few
  seconds on 2 cores (``threadlog bench invoices``).
- Cheap to hold: each invoice is an :class:`InvoiceDraft` (plain lines); the event
  is built and validated as it is issued.
- Deterministic: costs are summed as integer nano-dollars (each usage row's cost rounded
  to 1e-9 USD), so two schedulers computing the same period get identical amounts.
- When an ``invoices`` view exists (user_id, period), users already invoiced for the
  period are skipped in the query (``only_uninvoiced``); appends are idempotent anyway.

Failure modes: a missing ``usage`` table raises ``duckdb.CatalogException``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from events.invoice_events import InvoiceIssued, InvoiceLine, invoice_id, period_start

NANO = 1_000_000_000
TOKEN_KINDS = ("prompt_tokens", "completion_tokens", "total_tokens", "reasoning_tokens",
               "cached_input_tokens", "cache_write_tokens")

_SUMS = ", ".join(f"sum({k})::BIGINT AS {k}" for k in TOKEN_KINDS)
_INVOICE_SQL = f"""
SELECT user_id, model, count(*)::BIGINT AS calls, {_SUMS},
       sum(round(cost * {NANO})::BIGINT)::BIGINT AS cost_nanos
FROM usage u
WHERE billing_period = $period AND user_id IS NOT NULL {{uninvoiced}}
GROUP BY user_id, model
ORDER BY user_id, model
"""
_UNINVOICED = ("AND NOT EXISTS (SELECT 1 FROM invoices i "
               "WHERE i.user_id = u.user_id AND i.period = $period_text)")


@dataclass(frozen=True)
class InvoiceDraft:
    """One user's invoice as computed: lines are plain dicts of ``InvoiceLine``'s fields.
    The event is built (and validated) by :meth:`to_event` when it is issued."""

    user_id: str
    period: str
    amount_nanos: int
    lines: list[dict[str, Any]]

    @property
    def invoice_id(self) -> str:
        return invoice_id(self.user_id, self.period)

    @property
    def amount(self) -> float:
        return self.amount_nanos / NANO

    def to_event(self, issued_at: datetime) -> InvoiceIssued:
        return InvoiceIssued(invoice_id=self.invoice_id, user_id=self.user_id,
                             period=self.period, amount=self.amount,
                             lines=[InvoiceLine(**ln) for ln in self.lines],
                             issued_at=issued_at)


@dataclass(frozen=True)
class PeriodInvoices:
    period: str
    invoices: list[InvoiceDraft]
    usage_rows: int
    issued_at: datetime

    @property
    def amount(self) -> float:
        return sum(i.amount_nanos for i in self.invoices) / NANO


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = con.sql("SELECT count(*) FROM information_schema.tables WHERE table_name = $name",
                  params={"name": name}).fetchall()
    return bool(row and row[0][0])


def compute_invoices(con: duckdb.DuckDBPyConnection, period: str, issued_at: datetime, *,
                     only_uninvoiced: bool = True) -> PeriodInvoices:
    """The invoices of ``period`` (one per user with usage), with lines per model.

    Runs synchronously on ``con`` (use a cursor of the projector's connection, in a
    worker thread)."""
    start = period_start(period)
    skip = only_uninvoiced and has_table(con, "invoices")
    sql = _INVOICE_SQL.format(uninvoiced=_UNINVOICED if skip else "")
    params: dict[str, object] = {"period": start}
    if skip:
        params["period_text"] = period
    table = con.sql(sql, params=params).to_arrow_table()
    users = table.column("user_id").to_pylist()
    nanos = table.column("cost_nanos").to_pylist()
    calls = table.column("calls").to_pylist()
    columns = [table.column(k).to_pylist() for k in ("model", "calls", *TOKEN_KINDS)]
    keys = ("model", "calls", *TOKEN_KINDS)
    invoices: list[InvoiceDraft] = []
    i, n = 0, len(users)
    while i < n:
        user, first, total = users[i], i, 0
        while i < n and users[i] == user:
            total += nanos[i]
            i += 1
        lines = [dict(zip(keys, [col[j] for col in columns], strict=True),
                      cost=nanos[j] / NANO) for j in range(first, i)]
        invoices.append(InvoiceDraft(user, period, total, lines))
    return PeriodInvoices(period, invoices, sum(calls), issued_at)


def uninvoiced_periods(con: duckdb.DuckDBPyConnection, before: str) -> list[str]:
    """Periods before ``before`` (``YYYY-MM``) that have usage and, per the ``invoices``
    view when it exists, at least one user without an invoice. Oldest first."""
    start = period_start(before)
    if has_table(con, "invoices"):
        sql = ("SELECT DISTINCT strftime(billing_period, '%Y-%m') AS p FROM usage u "
               "WHERE billing_period < $start AND user_id IS NOT NULL AND NOT EXISTS ("
               "SELECT 1 FROM invoices i WHERE i.user_id = u.user_id "
               "AND i.period = strftime(u.billing_period, '%Y-%m')) ORDER BY p")
    else:
        sql = ("SELECT DISTINCT strftime(billing_period, '%Y-%m') AS p FROM usage "
               "WHERE billing_period < $start AND user_id IS NOT NULL ORDER BY p")
    return [str(r[0]) for r in con.sql(sql, params={"start": start}).fetchall()]
