"""CLI for billing: ``threadlog invoices run|list`` and ``threadlog usage``.

``invoices run`` asks the running scheduler (``threadlog serve``, which owns the DuckDB
file) over ``ops.invoices.run`` (operator credentials suffice); ``invoices list`` and
``usage`` read the log directly (no DuckDB needed, so they work while ``serve`` holds the
file; reading the log takes service credentials).
Wire into ``threadlog/cli.py``::

    from threadlog.cli_billing import invoices_app, usage_command
    app.add_typer(invoices_app, name="invoices")
    app.command("usage")(usage_command)
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from events import Aggregate, EventStore, EventStreamSpec, ThreadlogError
from events.connection import NatsEndpoint
from events.invoice_events import InvoiceFailed, InvoiceIssued, InvoicePaid, check_period
from events.replies import Reply
from handlers.billing.spend_ledger import NANO, UserSpend
from threadlog.cli_options import CredsOpt, endpoint_for

invoices_app = typer.Typer(help="Invoices: run a period, list issued invoices.")
console = Console()

NatsUrl = typer.Option(..., "--nats-url", help="NATS URL(s), comma separated",
                       envvar="THREADLOG_NATS_URLS")
Stream = typer.Option("EVENTS", "--stream", envvar="THREADLOG_EVENTS_STREAM")


@dataclass
class InvoiceRow:
    invoice_id: str
    user_id: str
    period: str
    amount: float
    currency: str
    status: str


async def list_invoices(store: EventStore, *, period: str | None = None,
                        user_id: str | None = None) -> list[InvoiceRow]:
    """Every issued invoice with its current status, from the log, sorted by id."""
    rows: dict[str, InvoiceRow] = {}
    async for rec in store.replay(subject="events.invoice.>"):
        ev = rec.event
        if isinstance(ev, InvoiceIssued):
            if (period and ev.period != period) or (user_id and ev.user_id != user_id):
                continue
            rows[ev.invoice_id] = InvoiceRow(ev.invoice_id, ev.user_id, ev.period, ev.amount,
                                             ev.currency, "pending")
        elif isinstance(ev, InvoicePaid | InvoiceFailed) and ev.invoice_id in rows:
            rows[ev.invoice_id].status = "paid" if isinstance(ev, InvoicePaid) else "failed"
    return [rows[k] for k in sorted(rows)]


async def usage_by_model(store: EventStore, user_id: str, period: str) -> UserSpend:
    """The user's usage fold (per period and model) from ``usage.<user_id>``."""
    spend = UserSpend()
    for rec in await store.read(Aggregate("usage", user_id)):
        spend.apply(rec)
    return spend


async def _with_store(endpoint: NatsEndpoint, stream: str, fn: Any) -> Any:
    await endpoint.probe(timeout=3)  # Unavailable, one line, when unreachable or refused
    nc = await endpoint.connect(connect_timeout=3)
    store = EventStore(nc, EventStreamSpec(name=stream))
    try:
        return await fn(store)
    finally:
        await store.close()
        await nc.close()


def _fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/] {message}")
    raise typer.Exit(1)


@invoices_app.command("run")
def invoices_run(period: str = typer.Option(..., "--period", help="YYYY-MM (a closed month)"),
                 nats_url: str = NatsUrl, stream: str = Stream,
                 creds: Path | None = CredsOpt) -> None:
    """Issue the invoices of a closed period now (idempotent: issued ones are skipped)."""
    from scheduler.invoice_scheduler import RUN_SUBJECT

    async def run(store: EventStore) -> Reply:
        import nats.errors

        try:
            msg = await store.nc.request(RUN_SUBJECT, json.dumps({"period": period}).encode(),
                                         timeout=600)
        except nats.errors.NoRespondersError:
            _fail("no scheduler is running (start `threadlog serve`)")
        return Reply.model_validate_json(msg.data)

    try:
        result = asyncio.run(_with_store(endpoint_for(nats_url, creds), stream, run)).unwrap()
    except ThreadlogError as exc:
        _fail(f"{exc.code}: {exc.message}")
    table = Table(title=f"invoices {period}")
    for col in ("period", "issued", "already issued"):
        table.add_column(col, justify="right")
    table.add_row(result["period"], str(result["issued"]), str(result["already_issued"]))
    console.print(table)


@invoices_app.command("list")
def invoices_list(period: str | None = typer.Option(None, "--period", help="YYYY-MM"),
                  user: str | None = typer.Option(None, "--user"),
                  nats_url: str = NatsUrl, stream: str = Stream,
                  creds: Path | None = CredsOpt) -> None:
    """Issued invoices and their status (pending, paid, failed)."""
    if period:
        check_period(period)
    rows: list[InvoiceRow] = asyncio.run(_with_store(
        endpoint_for(nats_url, creds), stream,
        lambda s: list_invoices(s, period=period, user_id=user)))
    table = Table(title="invoices")
    for col in ("invoice", "user", "period", "amount", "currency", "status"):
        table.add_column(col, justify="right" if col == "amount" else "left")
    for r in rows:
        table.add_row(r.invoice_id, r.user_id, r.period, f"{r.amount:,.6f}", r.currency,
                      r.status)
    console.print(table)


def usage_command(user: str = typer.Option(..., "--user"),
                  period: str = typer.Option(..., "--period", help="YYYY-MM"),
                  nats_url: str = NatsUrl, stream: str = Stream,
                  creds: Path | None = CredsOpt) -> None:
    """A user's usage in a period, per model: calls, tokens by kind, cost."""
    check_period(period)
    spend: UserSpend = asyncio.run(_with_store(
        endpoint_for(nats_url, creds), stream, lambda s: usage_by_model(s, user, period)))
    table = Table(title=f"usage of {user} in {period}")
    kinds = ("prompt_tokens", "completion_tokens", "reasoning_tokens", "cached_input_tokens",
             "cache_write_tokens")
    for col in ("model", "calls", *kinds, "cost USD"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for model, line in sorted(spend.by_model.get(period, {}).items()):
        table.add_row(model, str(line.calls), *(f"{line.tokens.get(k, 0):,}" for k in kinds),
                      f"{line.cost_nanos / NANO:,.6f}")
    limit = "none" if spend.limit_usd is None else f"{spend.limit_usd:,.6f}"
    table.caption = f"total {spend.spent_usd(period):,.6f} USD; own limit {limit}"
    console.print(table)
