"""Billing: budgets (spend limits checked before a model call), invoice status commands.

Invoices are issued by ``scheduler/``; this package changes their status and guards
generations against spend limits, reading spend from the log (no DuckDB here).
"""

from handlers.billing.app import Billing, register_billing_commands
from handlers.billing.budget_guard import BudgetExceeded, BudgetGuard
from handlers.billing.spend_ledger import BudgetStatus, SpendLedger

__all__ = ["Billing", "BudgetExceeded", "BudgetGuard", "BudgetStatus", "SpendLedger",
           "register_billing_commands"]
