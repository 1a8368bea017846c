"""Billing subjects (request/reply, served by the handlers process). ``ops.invoices.run``
is served by the scheduler (``scheduler.invoice_scheduler.RUN_SUBJECT``).

Invoice status and spend limits are operators' (``ops.*``: only the operator and service
roles may publish there; the body names the user); a user reads its own budget on
``query.<user_id>.budget.status``."""

from __future__ import annotations

INVOICE_PAID = "ops.invoice.paid"
INVOICE_FAILED = "ops.invoice.failed"
SET_SPEND_LIMIT = "ops.budget.set"
BUDGET_STATUS = "query.{user_id}.budget.status"

ALL = [INVOICE_PAID, INVOICE_FAILED, SET_SPEND_LIMIT, BUDGET_STATUS]
