"""The billing commands through the one pipeline (``handlers.aggregate_runner``).

- ``ops.invoice.paid`` / ``ops.invoice.failed``: the invoice aggregate
  (``handlers.billing.invoice_status``).
- ``ops.budget.set``: ``SpendLimitSet`` on ``usage.<user_id>``, appended with ``expected`` =
  the ledger's fold of that aggregate (caught up first: generations append usage there
  from every handler process; a conflict catches up and retries). The reply is the
  budget status with the new limit, and a re-sent command id gets that first reply back
  from the command log (not the limit as it is now).
- ``query.<user_id>.budget.status``: a read of the ledger (no pipeline: nothing is appended).

Guarantees and failure modes: those of the aggregate runner; a refused command appends
nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

from events import EventStore
from events.invoice_events import SpendLimitSet, period_of
from events.replies import Reply
from handlers.aggregate_runner import AggregateKind, AggregateRunner, Decision
from handlers.billing.commands import (
    BudgetQuery,
    MarkInvoiceFailed,
    MarkInvoicePaid,
    SetSpendLimit,
)
from handlers.billing.invoice_status import InvoiceStatusCommands
from handlers.billing.spend_ledger import BudgetStatus, SpendLedger, UserSpend
from handlers.command_log import CommandLog


class BillingCommands:
    """Invoice status changes, spend limits and the budget query for one ledger."""

    def __init__(self, store: EventStore, ledger: SpendLedger,
                 command_log: CommandLog | None) -> None:
        self.ledger = ledger
        self.invoices = InvoiceStatusCommands(store, command_log)
        self.limits: AggregateRunner[UserSpend, Decision] = AggregateRunner(
            store, ledger.users, command_log,
            AggregateKind("usage", applied=lambda st, cid: None, advance=self._advance,
                          refresh_first=True))

    async def mark_invoice(self, cmd: MarkInvoicePaid | MarkInvoiceFailed) -> Reply:
        return await self.invoices.change(cmd)

    async def set_spend_limit(self, cmd: SetSpendLimit) -> Reply:
        """Set (or clear with ``None``) the user's limit; the result is the budget status
        with it."""
        return await self.limits.run(cmd, cmd.user_id, lambda st: self._decide(st, cmd),
                                     lambda st: self._decide(st, cmd))

    async def budget_status(self, q: BudgetQuery) -> Reply:
        status = await self.ledger.status(q.user_id, q.period)
        return Reply.success(status.to_dict())

    def _decide(self, spend: UserSpend, cmd: SetSpendLimit) -> Decision:
        period = period_of(self.ledger.clock())
        limit = cmd.limit_usd if cmd.limit_usd is not None else self.ledger.default_limit_usd
        status = BudgetStatus(cmd.user_id, period, limit, spend.spent_usd(period))
        return Decision([SpendLimitSet(user_id=cmd.user_id, limit_usd=cmd.limit_usd)],
                        status.to_dict())

    def _advance(self, spend: UserSpend, decision: Decision, seq: int,
                 command_id: str) -> None:
        for ev in decision.events:
            spend.fold(ev, seq, datetime.now(UTC))
        self.ledger.note_limit(spend)
