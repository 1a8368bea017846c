"""Billing command models: invoice status changes, spend limits, the budget query."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from events import SafeId, ValidationFailed
from events.invoice_events import check_period
from handlers.commands import STRICT_INPUT, Command


def _period(v: str) -> str:
    try:
        return check_period(v)
    except ValidationFailed:
        raise ValueError("must be YYYY-MM") from None


class MarkInvoicePaid(Command):
    """``pending`` -> ``paid`` for the invoice of (``user_id``, ``period``)."""

    period: str
    payment_ref: str | None = Field(None, max_length=200)

    _check = field_validator("period")(_period)


class MarkInvoiceFailed(Command):
    """``pending`` -> ``failed`` for the invoice of (``user_id``, ``period``)."""

    period: str
    reason: str = Field("payment failed", max_length=1_000)

    _check = field_validator("period")(_period)


class SetSpendLimit(Command):
    """The user's spend limit per billing period in USD; ``null`` removes it (the
    configured default applies again)."""

    limit_usd: float | None = Field(None, ge=0, allow_inf_nan=False)


class BudgetQuery(BaseModel):
    """The user's limit and spend for ``period`` (default: the current one, UTC)."""

    model_config = STRICT_INPUT

    user_id: SafeId
    period: str | None = None

    _check = field_validator("period")(lambda v: v if v is None else _period(v))
