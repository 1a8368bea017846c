"""The ``invoices`` view: one row per issued invoice (user, period, amount, lines as JSON,
status). ``invoice_paid`` / ``invoice_failed`` patch the status. Billing facts only: no
content, never removed by thread or user-data deletion."""

from __future__ import annotations

import json
from typing import ClassVar

import duckdb

from projections.tables import KeyedRows, Table
from projections.view import Envelope, View

INVOICES = Table(
    "invoices",
    {"invoice_id": "VARCHAR", "user_id": "VARCHAR", "period": "VARCHAR", "amount": "DOUBLE",
     "currency": "VARCHAR", "lines": "JSON", "status": "VARCHAR",
     "issued_at": "TIMESTAMPTZ", "status_at": "TIMESTAMPTZ", "seq": "BIGINT"},
    key=("invoice_id",),
    indexes=(("user_id", "period"),),
)


class InvoicesBatch:
    def __init__(self) -> None:
        self.rows = KeyedRows(INVOICES, patch_columns=("status", "status_at", "seq"))

    def add(self, seq: int, env: Envelope) -> None:
        d = env["data"]
        if env["type"] == "invoice_issued":
            self.rows.insert(d["invoice_id"], {
                "invoice_id": d["invoice_id"], "user_id": d["user_id"], "period": d["period"],
                "amount": d["amount"], "currency": d.get("currency", "USD"),
                "lines": json.dumps(d.get("lines", [])), "status": "pending",
                "issued_at": d["issued_at"], "status_at": None, "seq": seq})
        else:
            status = "paid" if env["type"] == "invoice_paid" else "failed"
            self.rows.patch(d["invoice_id"], {"invoice_id": d["invoice_id"], "status": status,
                                              "status_at": d.get("at"), "seq": seq})

    def flush(self, con: duckdb.DuckDBPyConnection, *, replace: bool = False) -> None:
        self.rows.flush(con, replace=replace)


class InvoicesView(View):
    name: ClassVar[str] = "invoices"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[Table, ...]] = (INVOICES,)
    handles: ClassVar[frozenset[str]] = frozenset(
        {"invoice_issued", "invoice_paid", "invoice_failed"})

    def new_batch(self) -> InvoicesBatch:
        return InvoicesBatch()
