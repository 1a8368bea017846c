"""``threadlog invoices list|run`` and ``threadlog usage``: tables read from the log."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import typer
from typer.testing import CliRunner

from events import Aggregate, EventStore, Usage, UsageRecorded
from events.invoice_events import InvoiceIssued, InvoiceLine, invoice_id
from handlers.billing.commands import MarkInvoicePaid
from handlers.billing.invoice_status import change_invoice_status
from scheduler.invoice_issuer import issue_invoice
from threadlog.cli_billing import invoices_app, list_invoices, usage_command
from threadlog.embedded_nats import EmbeddedNats

app = typer.Typer()
app.add_typer(invoices_app, name="invoices")
app.command("usage")(usage_command)


async def test_list_and_usage_tables(store: EventStore, nats_server: EmbeddedNats) -> None:
    for user in ("ann", "ben"):
        await issue_invoice(store, InvoiceIssued(
            invoice_id=invoice_id(user, "2025-01"), user_id=user, period="2025-01",
            amount=2.5, lines=[InvoiceLine(model="gpt-4o", calls=2, cost=2.5)],
            issued_at=datetime(2025, 2, 2, tzinfo=UTC)))
    await change_invoice_status(store, MarkInvoicePaid(command_id="p", user_id="ann",
                                                       period="2025-01"))
    rows = await list_invoices(store, period="2025-01")
    assert [(r.user_id, r.status) for r in rows] == [("ann", "paid"), ("ben", "pending")]
    await store.append(Aggregate("usage", "ann"), [UsageRecorded(
        call_id="c1", user_id="ann", model="gpt-4o", cost=0.5,
        usage=Usage(prompt_tokens=1234, completion_tokens=10, total_tokens=1244),
        at=datetime(2025, 1, 31, 23, 59, 59, tzinfo=UTC))])
    common = ["--nats-url", nats_server.url, "--creds", str(nats_server.service_creds),
              "--stream", store.stream]
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        res = runner.invoke(app, [*args, *common])
        return res.exit_code, res.output

    code, out = await asyncio.to_thread(invoke, "invoices", "list")
    assert code == 0 and "ann_2025-01" in out and "paid" in out and "pending" in out
    code, out = await asyncio.to_thread(invoke, "usage", "--user", "ann", "--period", "2025-01")
    assert code == 0 and "gpt-4o" in out and "1,234" in out and "0.500000" in out
    code, out = await asyncio.to_thread(invoke, "invoices", "run", "--period", "2025-01")
    assert code == 1 and "no scheduler is running" in out
