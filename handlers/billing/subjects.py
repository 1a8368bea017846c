"""Billing subjects (request/reply, served by the handlers process). ``cmd.invoices.run``
is served by the scheduler (``scheduler.invoice_scheduler.RUN_SUBJECT``)."""

from __future__ import annotations

INVOICE_PAID = "cmd.invoice.paid"
INVOICE_FAILED = "cmd.invoice.failed"
SET_SPEND_LIMIT = "cmd.budget.set"
BUDGET_STATUS = "query.budget.status"

ALL = [INVOICE_PAID, INVOICE_FAILED, SET_SPEND_LIMIT, BUDGET_STATUS]
