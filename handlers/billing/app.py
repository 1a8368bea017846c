"""Billing subscribers: invoice status commands, spend limits and the budget query.

``register_billing_commands(broker, store, ...)`` registers them on a broker the caller
owns (like ``handlers.app.build_handlers``) and returns the :class:`Billing` whose
``guard.check_budget`` the generation calls first.

| subject | payload -> result |
| --- | --- |
| ``ops.invoice.paid`` | ``{command_id, user_id, period, payment_ref?}`` -> invoice |
| ``ops.invoice.failed`` | ``{command_id, user_id, period, reason?}`` -> invoice |
| ``ops.budget.set`` | ``{command_id, user_id, limit_usd: number or null}`` -> budget |
| ``query.<user_id>.budget.status`` | ``{user_id, period?}`` -> ``{limit_usd, spent_usd, ...}`` |

The invoice commands are for operators and payment integrations: they act on the invoice
of the ``user_id`` they name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from faststream.nats import NatsBroker

import events.invoice_events  # noqa: F401  (registers the billing events)
from events import EventStore
from handlers.billing import subjects
from handlers.billing.budget_guard import BudgetGuard
from handlers.billing.commands import (
    BudgetQuery,
    MarkInvoiceFailed,
    MarkInvoicePaid,
    SetSpendLimit,
)
from handlers.billing.service import BillingCommands
from handlers.billing.spend_ledger import SpendLedger
from handlers.command_log import CommandLog
from handlers.llm.usage_and_cost import ModelPrice
from handlers.subjects import COMMAND_QUEUE


@dataclass
class Billing:
    ledger: SpendLedger
    guard: BudgetGuard


def register_billing_commands(broker: NatsBroker, store: EventStore, *,
                              command_log: CommandLog | None = None,
                              default_limit_usd: float | None = None,
                              prices: Mapping[str, ModelPrice] | None = None,
                              assumed_completion_tokens: int = 512) -> Billing:
    ledger = SpendLedger(store, default_limit_usd=default_limit_usd)
    billing = Billing(ledger, BudgetGuard(ledger, prices=prices,
                                          assumed_completion_tokens=assumed_completion_tokens))
    commands = BillingCommands(store, ledger, command_log)

    @broker.subscriber(subjects.INVOICE_PAID, queue=COMMAND_QUEUE, title=subjects.INVOICE_PAID,
                       description="Mark a pending invoice paid (else invalid_transition).")
    async def invoice_paid(body: MarkInvoicePaid) -> dict[str, Any]:
        return (await commands.mark_invoice(body)).model_dump(mode="json")

    @broker.subscriber(subjects.INVOICE_FAILED, queue=COMMAND_QUEUE, title=subjects.INVOICE_FAILED,
                       description="Mark a pending invoice failed (else invalid_transition).")
    async def invoice_failed(body: MarkInvoiceFailed) -> dict[str, Any]:
        return (await commands.mark_invoice(body)).model_dump(mode="json")

    @broker.subscriber(subjects.SET_SPEND_LIMIT, queue=COMMAND_QUEUE,
                       title=subjects.SET_SPEND_LIMIT,
                       description="Set (or clear with null) the user's spend limit per "
                                   "billing period, in USD.")
    async def set_spend_limit(body: SetSpendLimit) -> dict[str, Any]:
        return (await commands.set_spend_limit(body)).model_dump(mode="json")

    @broker.subscriber(subjects.BUDGET_STATUS, queue=COMMAND_QUEUE, title=subjects.BUDGET_STATUS,
                       description="The user's spend limit and spend so far in a period.")
    async def budget_status(body: BudgetQuery) -> dict[str, Any]:
        return (await commands.budget_status(body)).model_dump(mode="json")

    return billing
