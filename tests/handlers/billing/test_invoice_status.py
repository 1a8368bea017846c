"""Invoice status commands: pending -> paid | failed; every other transition is refused
with ``invalid_transition`` and appends nothing; re-sent commands are idempotent."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from events import ThreadlogError
from events.invoice_events import InvoiceIssued, InvoiceLine, invoice_aggregate, invoice_id
from handlers.billing import subjects
from scheduler.invoice_issuer import issue_invoice
from tests.handlers.billing.test_budget import rt  # noqa: F401  (the runtime fixture with billing registered)
from threadlog.runtime import Runtime


async def issue(rt: Runtime,  # noqa: F811
                user: str, period: str = "2025-01") -> None:
    inv = InvoiceIssued(invoice_id=invoice_id(user, period), user_id=user, period=period,
                        amount=1.5, lines=[InvoiceLine(model="gpt-4o", calls=1, cost=1.5)],
                        issued_at=datetime(2025, 2, 2, tzinfo=UTC))
    assert await issue_invoice(rt.store, inv) is True
    assert await issue_invoice(rt.store, inv) is False


async def test_pending_invoice_becomes_paid_and_then_cannot_fail(rt: Runtime) -> None:  # noqa: F811
    await issue(rt, "p1")
    c = rt.client("p1")
    paid = await c.command(subjects.INVOICE_PAID, "pay-1", period="2025-01",
                           payment_ref="ch_123")
    assert paid.value["status"] == "paid" and paid.value["invoice_id"] == "p1_2025-01"
    again = await c.command(subjects.INVOICE_PAID, "pay-1", period="2025-01",
                            payment_ref="ch_123")
    assert again.value == paid.value and again.seq == paid.seq
    version = len(await rt.store.read(invoice_aggregate("p1", "2025-01")))
    for subject, cid in ((subjects.INVOICE_FAILED, "fail-1"), (subjects.INVOICE_PAID, "pay-2")):
        with pytest.raises(ThreadlogError) as ei:
            await c.command(subject, cid, period="2025-01")
        assert ei.value.code == "invalid_transition"
        assert ei.value.details["from"] == "paid"
    assert len(await rt.store.read(invoice_aggregate("p1", "2025-01"))) == version == 2


async def test_failed_invoice_cannot_be_paid(rt: Runtime) -> None:  # noqa: F811
    await issue(rt, "p2")
    c = rt.client("p2")
    failed = await c.command(subjects.INVOICE_FAILED, period="2025-01", reason="card declined")
    assert failed.value["status"] == "failed"
    with pytest.raises(ThreadlogError) as ei:
        await c.command(subjects.INVOICE_PAID, period="2025-01")
    assert (ei.value.code, ei.value.details["from"], ei.value.details["to"]) == (
        "invalid_transition", "failed", "paid")


async def test_unknown_invoice_and_bad_period(rt: Runtime) -> None:  # noqa: F811
    c = rt.client("p3")
    with pytest.raises(ThreadlogError) as ei:
        await c.command(subjects.INVOICE_PAID, period="2025-01")
    assert ei.value.code == "not_found"
    with pytest.raises(ThreadlogError) as ei:
        await c.command(subjects.INVOICE_PAID, period="2025-1")
    assert ei.value.code == "invalid_input"
