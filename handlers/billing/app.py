"""Billing subscribers: invoice status commands, spend limits and the budget query.

``register_billing_commands(broker, store, ...)`` registers them on a broker the caller
owns (like ``handlers.app.build_handlers``) and returns the :class:`Billing` whose
``guard.check_budget`` the generation calls first.

| subject | payload -> result |
| --- | --- |
| ``cmd.invoice.paid`` | ``{command_id, user_id, period, payment_ref?}`` -> invoice |
| ``cmd.invoice.failed`` | ``{command_id, user_id, period, reason?}`` -> invoice |
| ``cmd.budget.set`` | ``{command_id, user_id, limit_usd: number or null}`` -> budget |
| ``query.budget.status`` | ``{user_id, period?}`` -> ``{limit_usd, spent_usd, ...}`` |

The invoice commands are for operators and payment integrations: they act on the invoice
of the ``user_id`` they name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from faststream.nats import NatsBroker

import events.invoice_events  # noqa: F401  (registers the billing events)
from events import Aggregate, EventStore
from events.invoice_events import SpendLimitSet
from events.replies import Reply
from handlers.billing import subjects
from handlers.billing.budget_guard import BudgetGuard
from handlers.billing.commands import (
    BudgetQuery,
    MarkInvoiceFailed,
    MarkInvoicePaid,
    SetSpendLimit,
)
from handlers.billing.invoice_status import change_invoice_status
from handlers.billing.spend_ledger import SpendLedger
from handlers.llm.usage_and_cost import ModelPrice
from handlers.subjects import COMMAND_QUEUE


@dataclass
class Billing:
    ledger: SpendLedger
    guard: BudgetGuard


def register_billing_commands(broker: NatsBroker, store: EventStore, *,
                              default_limit_usd: float | None = None,
                              prices: Mapping[str, ModelPrice] | None = None,
                              assumed_completion_tokens: int = 512) -> Billing:
    ledger = SpendLedger(store, default_limit_usd=default_limit_usd)
    billing = Billing(ledger, BudgetGuard(ledger, prices=prices,
                                          assumed_completion_tokens=assumed_completion_tokens))

    @broker.subscriber(subjects.INVOICE_PAID, queue=COMMAND_QUEUE, title=subjects.INVOICE_PAID,
                       description="Mark a pending invoice paid (else invalid_transition).")
    async def invoice_paid(body: MarkInvoicePaid) -> dict[str, Any]:
        return (await change_invoice_status(store, body)).model_dump(mode="json")

    @broker.subscriber(subjects.INVOICE_FAILED, queue=COMMAND_QUEUE, title=subjects.INVOICE_FAILED,
                       description="Mark a pending invoice failed (else invalid_transition).")
    async def invoice_failed(body: MarkInvoiceFailed) -> dict[str, Any]:
        return (await change_invoice_status(store, body)).model_dump(mode="json")

    @broker.subscriber(subjects.SET_SPEND_LIMIT, queue=COMMAND_QUEUE,
                       title=subjects.SET_SPEND_LIMIT,
                       description="Set (or clear with null) the user's spend limit per "
                                   "billing period, in USD.")
    async def set_spend_limit(body: SetSpendLimit) -> dict[str, Any]:
        res = await store.append(Aggregate("usage", body.user_id),
                                 [SpendLimitSet(user_id=body.user_id, limit_usd=body.limit_usd)],
                                 command_id=body.command_id, user_id=body.user_id,
                                 correlation_id=body.correlation_id)
        status = await ledger.status(body.user_id)
        return Reply.success(status.to_dict(), res.last_seq).model_dump(mode="json")

    @broker.subscriber(subjects.BUDGET_STATUS, queue=COMMAND_QUEUE, title=subjects.BUDGET_STATUS,
                       description="The user's spend limit and spend so far in a period.")
    async def budget_status(body: BudgetQuery) -> dict[str, Any]:
        status = await ledger.status(body.user_id, body.period)
        return Reply.success(status.to_dict()).model_dump(mode="json")

    return billing
