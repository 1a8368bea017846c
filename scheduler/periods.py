"""Billing periods in UTC: ``YYYY-MM``, the first day of the month at 00:00 UTC to the
first day of the next. A call at 23:59:59.999 UTC on the last day belongs to that month.

Parsing and the period of a moment live in ``events.invoice_events`` (the events use
them); this module adds the calendar arithmetic the scheduler needs."""

from __future__ import annotations

from datetime import UTC, datetime

from events.invoice_events import check_period, period_of, period_start

__all__ = ["check_period", "is_closed", "next_period", "period_end", "period_of",
           "period_start", "previous_period"]


def next_period(period: str) -> str:
    year, month = int(check_period(period)[:4]), int(period[5:])
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def previous_period(now: datetime) -> str:
    """The month before the one ``now`` (UTC) falls in."""
    current = period_of(now)
    year, month = int(current[:4]), int(current[5:])
    return f"{year - (month == 1):04d}-{(month - 2) % 12 + 1:02d}"


def period_end(period: str) -> datetime:
    """The first instant after ``period`` (exclusive end), UTC."""
    start = period_start(next_period(period))
    return datetime(start.year, start.month, 1, tzinfo=UTC)


def is_closed(period: str, now: datetime) -> bool:
    """Whether ``period`` has ended at ``now``: only closed periods are invoiced."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now >= period_end(period)
