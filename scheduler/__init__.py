"""Invoice jobs: the monthly APScheduler job, start-up catch-up, and the invoice query.

Depends on ``events`` (and the DuckDB views ``projections`` maintains) only.
"""

import events.invoice_events  # noqa: F401  (registers the billing events)
from scheduler.invoice_computation import (
    InvoiceDraft,
    PeriodInvoices,
    compute_invoices,
    uninvoiced_periods,
)
from scheduler.invoice_issuer import IssueReport, issue_invoice, issue_invoices
from scheduler.invoice_scheduler import InvoiceScheduler, invoice_scheduler_part, monthly_trigger

__all__ = ["InvoiceDraft", "InvoiceScheduler", "IssueReport", "PeriodInvoices", "compute_invoices",
           "invoice_scheduler_part", "issue_invoice", "issue_invoices", "monthly_trigger",
           "uninvoiced_periods"]
