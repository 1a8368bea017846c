"""Appending ``InvoiceIssued`` events: once per (user, period), whoever tries.

Each invoice is appended to ``invoice.<user_id>_<YYYY-MM>`` with ``expected="no_stream"``
and the event id / ``Nats-Msg-Id`` derived from (user, period):

* a re-append inside the stream's duplicate window is a duplicate (nothing stored);
* after the window, the aggregate already has its event, so the version check refuses
  the append (:class:`ConcurrencyError`), counted as ``already_issued``.

So two schedulers started at once, a restart mid-run, or a manual re-run never issue an
invoice twice; an invoice, once issued, is never changed by a re-run (usage appended to a
period after its invoice is not billed: see ``scheduler`` docs).

Failure modes: an unreachable stream raises :class:`Unavailable` after the appends that
did land; re-running is safe.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from events import ConcurrencyError, EventEnvelope, EventStore
from events.invoice_events import InvoiceIssued, invoice_aggregate, issued_event_id
from scheduler.invoice_computation import InvoiceDraft, PeriodInvoices


@dataclass
class IssueReport:
    """What one run did. ``issued`` lists the invoice ids this run appended."""

    period: str
    issued: list[str] = field(default_factory=list)
    already_issued: int = 0

    def to_dict(self) -> dict[str, object]:
        return {"period": self.period, "issued": len(self.issued),
                "already_issued": self.already_issued}


async def issue_invoice(store: EventStore, invoice: InvoiceIssued) -> bool:
    """Append ``invoice``; True if this call stored it, False if it already existed."""
    agg = invoice_aggregate(invoice.user_id, invoice.period)
    env = EventEnvelope.wrap(invoice, agg, user_id=invoice.user_id,
                             event_id=issued_event_id(invoice.user_id, invoice.period),
                             occurred_at=invoice.issued_at)
    try:
        res = await store.append(agg, [env], expected="no_stream")
    except ConcurrencyError:
        return False
    return not res.duplicate


async def issue_invoices(store: EventStore, computed: PeriodInvoices, *,
                         concurrency: int = 256) -> IssueReport:
    """Append every invoice (``concurrency`` appends in flight). See the module docstring."""
    report = IssueReport(computed.period)
    slots = asyncio.Semaphore(concurrency)

    async def one(draft: InvoiceDraft) -> None:
        async with slots:
            inv = draft.to_event(computed.issued_at)
            if await issue_invoice(store, inv):
                report.issued.append(inv.invoice_id)
            else:
                report.already_issued += 1

    await asyncio.gather(*(one(d) for d in computed.invoices))
    return report
