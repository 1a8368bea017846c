"""Invoice status changes: ``pending`` -> ``paid`` | ``failed``, nothing else.

The invoice aggregate (``invoice.<user_id>_<YYYY-MM>``) is read from the log and folded;
the change is appended with ``expected`` = the aggregate's version and the command id as
``Nats-Msg-Id``, so
- two concurrent changes cannot both succeed: the loser re-reads and sees a non-pending
  invoice (``invalid_transition``);
- re-sending the same command returns the same result and appends nothing (inside the
  duplicate window by dedupe, after it because the event carries the command id as its
  causation id).

Errors: ``not_found`` (no invoice issued for the user and period), ``invalid_transition``
(details: ``from``, ``to``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from events import ConcurrencyError, EventStore, InvalidTransition, NotFound
from events.invoice_events import (
    InvoiceFailed,
    InvoiceIssued,
    InvoicePaid,
    InvoiceStatus,
    invoice_aggregate,
)
from events.replies import Reply
from handlers.billing.commands import MarkInvoiceFailed, MarkInvoicePaid

MAX_ATTEMPTS = 5


@dataclass
class InvoiceState:
    """An invoice folded from its events (``version`` 0: not issued)."""

    version: int = 0
    issued: InvoiceIssued | None = None
    status: InvoiceStatus = "pending"
    changed_by: dict[str, InvoiceStatus] = field(default_factory=dict)
    """command id -> the status it set, for idempotent re-sends."""

    def result(self) -> dict[str, Any]:
        assert self.issued is not None
        return {"invoice_id": self.issued.invoice_id, "user_id": self.issued.user_id,
                "period": self.issued.period, "amount": self.issued.amount,
                "currency": self.issued.currency, "status": self.status}


async def load_invoice(store: EventStore, user_id: str, period: str) -> InvoiceState:
    state = InvoiceState()
    for rec in await store.read(invoice_aggregate(user_id, period)):
        ev = rec.event
        state.version = rec.seq
        if isinstance(ev, InvoiceIssued):
            state.issued = ev
        elif isinstance(ev, InvoicePaid | InvoiceFailed):
            state.status = "paid" if isinstance(ev, InvoicePaid) else "failed"
            if rec.envelope.causation_id:
                state.changed_by[rec.envelope.causation_id] = state.status
    return state


async def change_invoice_status(store: EventStore,
                                cmd: MarkInvoicePaid | MarkInvoiceFailed) -> Reply:
    """Apply ``cmd`` (see the module docstring); the reply's ``seq`` is the new version."""
    target: InvoiceStatus = "paid" if isinstance(cmd, MarkInvoicePaid) else "failed"
    agg = invoice_aggregate(cmd.user_id, cmd.period)
    for _ in range(MAX_ATTEMPTS):
        state = await load_invoice(store, cmd.user_id, cmd.period)
        if state.issued is None:
            raise NotFound(f"no invoice for user {cmd.user_id!r} and period {cmd.period}",
                           details={"user_id": cmd.user_id, "period": cmd.period})
        if state.changed_by.get(cmd.command_id) == target:
            return Reply.success(state.result(), state.version)
        if state.status != "pending":
            raise InvalidTransition(
                f"invoice {state.issued.invoice_id} is {state.status}; only a pending "
                f"invoice can become {target}",
                details={"invoice_id": state.issued.invoice_id, "from": state.status,
                         "to": target})
        now = datetime.now(UTC)
        ev = (InvoicePaid(invoice_id=state.issued.invoice_id, payment_ref=cmd.payment_ref,
                          at=now) if isinstance(cmd, MarkInvoicePaid)
              else InvoiceFailed(invoice_id=state.issued.invoice_id, reason=cmd.reason, at=now))
        try:
            res = await store.append(agg, [ev], expected=state.version,
                                     command_id=cmd.command_id, user_id=cmd.user_id,
                                     correlation_id=cmd.correlation_id)
        except ConcurrencyError:
            continue
        state.status = target
        return Reply.success(state.result(), res.last_seq)
    raise ConcurrencyError(f"invoice {agg.id} kept changing", current_version=state.version)
