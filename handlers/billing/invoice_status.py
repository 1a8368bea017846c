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

from events import Aggregate, EventStore, InvalidTransition, NotFound, RecordedEvent
from events.invoice_events import (
    INVOICE_AGGREGATE,
    InvoiceFailed,
    InvoiceIssued,
    InvoicePaid,
    InvoiceStatus,
    invoice_aggregate,
    invoice_id,
)
from events.replies import Reply
from handlers.aggregate_runner import AggregateKind, AggregateRunner, Decision
from handlers.billing.commands import MarkInvoiceFailed, MarkInvoicePaid
from handlers.command_log import CommandLog
from handlers.state_cache import AggregateStateCache

MAX_ATTEMPTS = 5


@dataclass
class InvoiceState:
    """An invoice folded from its events (``version`` 0: not issued)."""

    key: str = ""
    """The aggregate id (``invoice_id(user_id, period)``)."""
    version: int = 0
    issued: InvoiceIssued | None = None
    status: InvoiceStatus = "pending"
    changed_by: dict[str, InvoiceStatus] = field(default_factory=dict)
    """command id -> the status it set, for idempotent re-sends."""

    @property
    def aggregate(self) -> Aggregate:
        return Aggregate(INVOICE_AGGREGATE, self.key)

    def apply_recorded(self, records: list[RecordedEvent]) -> None:
        for rec in records:
            ev = rec.event
            self.version = rec.seq
            if isinstance(ev, InvoiceIssued):
                self.issued = ev
            elif isinstance(ev, InvoicePaid | InvoiceFailed):
                self.status = "paid" if isinstance(ev, InvoicePaid) else "failed"
                if rec.envelope.causation_id:
                    self.changed_by[rec.envelope.causation_id] = self.status

    def result(self) -> dict[str, Any]:
        assert self.issued is not None
        return {"invoice_id": self.issued.invoice_id, "user_id": self.issued.user_id,
                "period": self.issued.period, "amount": self.issued.amount,
                "currency": self.issued.currency, "status": self.status}


async def load_invoice(store: EventStore, user_id: str, period: str) -> InvoiceState:
    state = InvoiceState(invoice_id(user_id, period))
    state.apply_recorded(await store.read(invoice_aggregate(user_id, period)))
    return state


def decide_status(state: InvoiceState, cmd: MarkInvoicePaid | MarkInvoiceFailed) -> Decision:
    """Pure: the status event of ``cmd``, or ``not_found`` / ``invalid_transition``."""
    target: InvoiceStatus = "paid" if isinstance(cmd, MarkInvoicePaid) else "failed"
    if state.issued is None:
        raise NotFound(f"no invoice for user {cmd.user_id!r} and period {cmd.period}",
                       details={"user_id": cmd.user_id, "period": cmd.period})
    if state.status != "pending":
        raise InvalidTransition(
            f"invoice {state.issued.invoice_id} is {state.status}; only a pending "
            f"invoice can become {target}",
            details={"invoice_id": state.issued.invoice_id, "from": state.status,
                     "to": target})
    now = datetime.now(UTC)
    ev = (InvoicePaid(invoice_id=state.issued.invoice_id, payment_ref=cmd.payment_ref, at=now)
          if isinstance(cmd, MarkInvoicePaid)
          else InvoiceFailed(invoice_id=state.issued.invoice_id, reason=cmd.reason, at=now))
    return Decision([ev], {**state.result(), "status": target})


def _advance(state: InvoiceState, decision: Decision, seq: int, command_id: str) -> None:
    status: InvoiceStatus = "paid" if isinstance(decision.events[0], InvoicePaid) else "failed"
    state.version, state.status = seq, status
    state.changed_by[command_id] = status


INVOICE_KIND: AggregateKind[InvoiceState, Decision] = AggregateKind(
    "invoice", applied=lambda st, cid: st.version if cid in st.changed_by else None,
    advance=_advance, refresh_first=True)
"""Invoices are issued by the scheduler (another process): caught up before deciding."""


class InvoiceStatusCommands:
    """``ops.invoice.paid`` / ``ops.invoice.failed`` through the aggregate runner."""

    def __init__(self, store: EventStore, command_log: CommandLog | None = None, *,
                 capacity: int = 10_000) -> None:
        self.states: AggregateStateCache[InvoiceState] = AggregateStateCache(
            store, InvoiceState, lambda st: st.version, capacity)
        self.runner = AggregateRunner(store, self.states, command_log, INVOICE_KIND,
                                      max_attempts=MAX_ATTEMPTS)

    async def change(self, cmd: MarkInvoicePaid | MarkInvoiceFailed) -> Reply:
        """Apply ``cmd`` (see the module docstring); the reply's ``seq`` is the new version
        (the invoice's current version for a re-sent command)."""
        return await self.runner.run(cmd, invoice_id(cmd.user_id, cmd.period),
                                     lambda st: decide_status(st, cmd),
                                     lambda st: Decision([], st.result()))


async def change_invoice_status(store: EventStore,
                                cmd: MarkInvoicePaid | MarkInvoiceFailed) -> Reply:
    """:meth:`InvoiceStatusCommands.change` without a command log or a cache (one read per
    call). Kept for callers that have no :class:`InvoiceStatusCommands`."""
    return await InvoiceStatusCommands(store, capacity=1).change(cmd)
