"""Spend so far per user and billing period, folded from the ``usage.<user_id>`` aggregate.

The handlers process has no DuckDB (the projector owns the file), so budgets read the log:
each user's aggregate is folded once and then caught up incrementally (only events after
the cached sequence), under a per-user lock. The fold holds, per period, the cost in
integer nano-dollars (as the invoices do) and the latest ``SpendLimitSet``.

Guarantees: ``status`` reflects every usage event appended before the call (the store
reads the aggregate's version from the stream leader). A usage event's period is the UTC
month of its ``at`` if set, else of its envelope's ``occurred_at`` (as in the usage view).

Usage appended through :meth:`SpendLedger.append_usage` expects the fold's version of the
aggregate: when the store accepts it, nothing else was appended in between, so the event is
folded at once and the next check reads only the version (one round trip, not two). When
the append is refused (another writer came first), it is appended without the check and
read back like any other event.

Failure modes: NATS errors propagate (``unavailable``). At most ``max_users`` users are
cached (least recently used dropped; they are re-read on demand).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from events import Aggregate, ConcurrencyError, EventStore, RecordedEvent, UsageRecorded
from events.envelope import EventEnvelope
from events.invoice_events import SpendLimitSet, period_of
from events.store import AppendResult

NANO = 1_000_000_000


@dataclass
class ModelSpend:
    calls: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    cost_nanos: int = 0


@dataclass
class UserSpend:
    """One user's fold: spend per period (and per model), and the limit set by command."""

    after_seq: int = 0
    nanos: dict[str, int] = field(default_factory=dict)
    by_model: dict[str, dict[str, ModelSpend]] = field(default_factory=dict)
    limit_usd: float | None = None
    limit_set: bool = False

    def apply(self, rec: RecordedEvent) -> None:
        ev = rec.event
        if isinstance(ev, UsageRecorded):
            period = period_of(ev.at or rec.envelope.occurred_at)
            cost = round(ev.cost * NANO)
            self.nanos[period] = self.nanos.get(period, 0) + cost
            line = self.by_model.setdefault(period, {}).setdefault(ev.model, ModelSpend())
            line.calls += 1
            line.cost_nanos += cost
            for kind, n in ev.usage.model_dump().items():
                line.tokens[kind] = line.tokens.get(kind, 0) + n
        elif isinstance(ev, SpendLimitSet):
            self.limit_usd = ev.limit_usd
            self.limit_set = ev.limit_usd is not None
        self.after_seq = rec.seq

    def spent_usd(self, period: str) -> float:
        return self.nanos.get(period, 0) / NANO


@dataclass(frozen=True)
class BudgetStatus:
    user_id: str
    period: str
    limit_usd: float | None
    spent_usd: float

    @property
    def remaining_usd(self) -> float | None:
        return None if self.limit_usd is None else max(0.0, self.limit_usd - self.spent_usd)

    def to_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "period": self.period, "limit_usd": self.limit_usd,
                "spent_usd": self.spent_usd, "remaining_usd": self.remaining_usd}


def utc_now() -> datetime:
    return datetime.now(UTC)


class SpendLedger:
    """Cached, incrementally caught-up folds of ``usage.<user_id>``; see the module doc.

    ``default_limit_usd`` applies to users who have no limit of their own."""

    def __init__(self, store: EventStore, *, default_limit_usd: float | None = None,
                 clock: Callable[[], datetime] = utc_now, max_users: int = 100_000) -> None:
        self.store = store
        self.default_limit_usd = default_limit_usd
        self.clock = clock
        self.max_users = max_users
        self._users: OrderedDict[str, UserSpend] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._appending: set[str] = set()

    async def user(self, user_id: str) -> UserSpend:
        """The user's fold, caught up with the log."""
        lock = self._locks.setdefault(user_id, asyncio.Lock())
        async with lock:
            spend = self._users.get(user_id) or UserSpend()
            for rec in await self.store.read(Aggregate("usage", user_id), spend.after_seq):
                spend.apply(rec)
            self._users[user_id] = spend
            self._users.move_to_end(user_id)
            while len(self._users) > self.max_users:
                evicted, _ = self._users.popitem(last=False)
                self._locks.pop(evicted, None)
        return spend

    async def append_usage(self, user_id: str, env: EventEnvelope) -> AppendResult:
        """Append ``env`` (a usage event) to ``usage.<user_id>``; fold it into the cached
        fold when the append proves that it directly follows the fold's last event (see
        the module docstring). One such append per user at a time; others meanwhile append
        without the check (no conflicts between our own appends)."""
        agg = Aggregate("usage", user_id)
        spend = self._users.get(user_id)
        if spend is None or user_id in self._appending:
            return await self.store.append(agg, [env])
        expected = spend.after_seq
        self._appending.add(user_id)
        try:
            res = await self.store.append(agg, [env], expected=expected or "no_stream")
        except ConcurrencyError:
            return await self.store.append(agg, [env])
        finally:
            self._appending.discard(user_id)
        if not res.duplicate:
            async with self._locks.setdefault(user_id, asyncio.Lock()):
                # A read that ran meanwhile may have folded it already: then after_seq moved.
                if self._users.get(user_id) is spend and spend.after_seq == expected:
                    spend.apply(RecordedEvent(res.last_seq, agg.subject(env.type), env))
        return res

    def limit_of(self, spend: UserSpend) -> float | None:
        return spend.limit_usd if spend.limit_set else self.default_limit_usd

    async def status(self, user_id: str, period: str | None = None) -> BudgetStatus:
        """Limit and spend of ``user_id`` in ``period`` (default: the current one)."""
        spend = await self.user(user_id)
        period = period or period_of(self.clock())
        return BudgetStatus(user_id, period, self.limit_of(spend), spend.spent_usd(period))
