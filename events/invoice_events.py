"""Billing events: invoices (``invoice.<user_id>_<YYYY-MM>``) and spend limits
(``usage.<user_id>``, beside the usage records they limit).

An invoice is one aggregate per (user, billing period). Its id is derived, never random,
so every writer that issues the invoice for (user, period) targets the same aggregate:

* ``InvoiceIssued`` is appended with ``expected="no_stream"`` and ``Nats-Msg-Id`` =
  :func:`issued_event_id` (user, period): a second scheduler, a restart or a manual re-run
  is a duplicate (inside the stream's duplicate window) or a version conflict (after it),
  never a second invoice.
* ``InvoicePaid`` / ``InvoiceFailed`` follow from ``pending`` only (see
  ``handlers.billing.invoice_status``).

None of these events carries user content: deleting a user's threads leaves them intact.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from events.catalogue import Event, register
from events.content import Usage
from events.envelope import Aggregate
from events.errors import ValidationFailed
from events.ids import SafeId, derived_id

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
INVOICE_AGGREGATE = "invoice"
MAX_ID = 128


def check_period(period: str) -> str:
    """Return ``period`` if it is ``YYYY-MM``; else raise :class:`ValidationFailed`."""
    if not isinstance(period, str) or not _PERIOD.match(period):
        raise ValidationFailed(f"billing period {period!r} is not YYYY-MM",
                               details={"field": "period", "value": str(period)[:50]})
    return period


def period_of(moment: datetime) -> str:
    """The billing period (``YYYY-MM``, UTC) a moment falls in. Naive datetimes are UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m")


def period_start(period: str) -> date:
    """The first day of ``period`` (the ``billing_period`` column of the usage view)."""
    check_period(period)
    return date(int(period[:4]), int(period[5:]), 1)


def invoice_id(user_id: str, period: str) -> str:
    """``<user_id>_<YYYY-MM>``: a safe subject token. For user ids so long that this would
    pass the 128-character id limit, a derived (uuid5) id of the pair is used instead."""
    check_period(period)
    plain = f"{user_id}_{period}"
    return plain if len(plain) <= MAX_ID else "inv" + derived_id("invoice", user_id, period)


def invoice_aggregate(user_id: str, period: str) -> Aggregate:
    return Aggregate(INVOICE_AGGREGATE, invoice_id(user_id, period))


def issued_event_id(user_id: str, period: str) -> str:
    """The event id and ``Nats-Msg-Id`` of the one ``InvoiceIssued`` of (user, period)."""
    return derived_id("invoice-issued", user_id, check_period(period))


class InvoiceLine(Usage):
    """One model's usage in the period: calls, tokens by kind (:class:`Usage`), cost (USD)."""

    model: str
    calls: int = Field(ge=0)
    cost: float = Field(0.0, ge=0)


@register
class InvoiceIssued(Event):
    """The invoice of ``user_id`` for ``period``, status ``pending``. ``amount`` is the sum
    of the lines' costs (rounded to 1e-9 USD, summed as decimals: deterministic)."""

    type: Literal["invoice_issued"] = "invoice_issued"
    aggregate_type: ClassVar[str] = INVOICE_AGGREGATE
    carries_content: ClassVar[bool] = False
    invoice_id: SafeId
    user_id: SafeId
    period: str
    amount: float = Field(ge=0)
    currency: Literal["USD"] = "USD"
    lines: list[InvoiceLine] = Field(default_factory=list)
    issued_at: datetime

    @field_validator("period")
    @classmethod
    def _period(cls, v: str) -> str:
        if not _PERIOD.match(v):
            raise ValueError("must be YYYY-MM")
        return v


@register
class InvoicePaid(Event):
    """``pending`` -> ``paid``."""

    type: Literal["invoice_paid"] = "invoice_paid"
    aggregate_type: ClassVar[str] = INVOICE_AGGREGATE
    carries_content: ClassVar[bool] = False
    invoice_id: SafeId
    payment_ref: str | None = Field(None, max_length=200)
    at: datetime


@register
class InvoiceFailed(Event):
    """``pending`` -> ``failed`` (the payment did not go through)."""

    type: Literal["invoice_failed"] = "invoice_failed"
    aggregate_type: ClassVar[str] = INVOICE_AGGREGATE
    carries_content: ClassVar[bool] = False
    invoice_id: SafeId
    reason: str = Field(max_length=1_000)
    at: datetime


@register
class SpendLimitSet(Event):
    """The user's spend limit per billing period (USD); ``None`` removes it. Lives on
    ``usage.<user_id>`` so one read of that aggregate gives both the limit and the spend."""

    type: Literal["spend_limit_set"] = "spend_limit_set"
    aggregate_type: ClassVar[str] = "usage"
    carries_content: ClassVar[bool] = False
    user_id: SafeId
    limit_usd: float | None = Field(None, ge=0)


InvoiceStatus = Literal["pending", "paid", "failed"]
