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

Which users have a limit: :meth:`SpendLedger.watch_limits` follows every
``spend_limit_set`` event of the stream (an ordered consumer filtered on those subjects:
rare, small events). Once it has caught up, a budget check of a user who has no limit of
their own, with no default limit, needs no read at all (:meth:`SpendLedger.unlimited`):
spend only matters against a limit. A limit set by another process reaches the watcher
within milliseconds; a call checked in that window goes unchecked, which budgets already
allow (they are soft under concurrent calls). Users with a limit are checked against the
log as above. Until the watcher has caught up (or if it stops), every check reads.

The folds live in an :class:`AggregateStateCache` (``SpendLedger.users``), which the
aggregate runner of ``ops.budget.set`` shares (``handlers.billing.service``): a limit
set here is folded at once, under the same per-user lock.

Failure modes: NATS errors propagate (``unavailable``). At most ``max_users`` users are
cached (least recently used dropped; they are re-read on demand).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nats.js.errors import NotFoundError

from events import Aggregate, ConcurrencyError, EventStore, RecordedEvent, UsageRecorded
from events.catalogue import Event
from events.envelope import STREAM_PREFIX, EventEnvelope
from events.invoice_events import SpendLimitSet, period_of
from events.store import AppendResult
from handlers.state_cache import AggregateStateCache

NANO = 1_000_000_000
log = logging.getLogger(__name__)


@dataclass
class ModelSpend:
    calls: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    cost_nanos: int = 0


@dataclass
class UserSpend:
    """One user's fold: spend per period (and per model), and the limit set by command."""

    user_id: str = ""
    after_seq: int = 0
    nanos: dict[str, int] = field(default_factory=dict)
    by_model: dict[str, dict[str, ModelSpend]] = field(default_factory=dict)
    limit_usd: float | None = None
    limit_set: bool = False

    @property
    def aggregate(self) -> Aggregate:
        return Aggregate("usage", self.user_id)

    def apply_recorded(self, records: list[RecordedEvent]) -> None:
        for rec in records:
            self.apply(rec)

    def apply(self, rec: RecordedEvent) -> None:
        self.fold(rec.event, rec.seq, rec.envelope.occurred_at)

    def fold(self, ev: Event, seq: int, occurred_at: datetime) -> None:
        """Fold one event stored at ``seq`` (``occurred_at``: its envelope's time)."""
        if isinstance(ev, UsageRecorded):
            period = period_of(ev.at or occurred_at)
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
        self.after_seq = seq

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
        self.users: AggregateStateCache[UserSpend] = AggregateStateCache(
            store, lambda uid: UserSpend(user_id=uid), lambda st: st.after_seq, max_users)
        """The folds, by user id (the aggregate runner of ``ops.budget.set`` shares it)."""
        self._appending: set[str] = set()
        self._limited: dict[str, bool] = {}
        """Users whose latest ``spend_limit_set`` sets a limit (watcher; see the module)."""
        self._limits_ready = False
        self._limits_sub: Any = None
        self._limits_seq = 0
        self._limits_moved = asyncio.Condition()

    async def watch_limits(self, timeout: float = 5.0) -> None:
        """Follow ``spend_limit_set`` events (see the module docstring); returns once the
        events stored so far are applied, or after ``timeout`` (checks keep reading until
        the watcher reaches them)."""
        subject = f"{STREAM_PREFIX}.usage.*.spend_limit_set"
        try:
            target = int((await self.store.js.get_last_msg(self.store.stream, subject)).seq
                         or 0)
        except NotFoundError:
            target = 0

        async def on_msg(msg: Any) -> None:
            try:
                data = json.loads(msg.data).get("data", {})
                self._limited[str(data["user_id"])] = data.get("limit_usd") is not None
            except (ValueError, KeyError, TypeError):
                log.warning("spend_limit_set not understood: %r", msg.data[:200])
            self._limits_seq = int(msg.metadata.sequence.stream)
            if self._limits_seq >= target and self._limits_sub is not None:
                self._limits_ready = True
            async with self._limits_moved:
                self._limits_moved.notify_all()

        self._limits_sub = await self.store.js.subscribe(
            subject, cb=on_msg, ordered_consumer=True, stream=self.store.stream)
        self._limits_ready = self._limits_ready or target == 0
        try:
            await self.limits_applied(target, timeout)
        except TimeoutError:
            log.warning("spend limits not caught up after %.1fs: budget checks read", timeout)

    async def limits_applied(self, seq: int, timeout: float = 5.0) -> None:
        """Wait until the watcher has applied the limit events up to stream sequence
        ``seq`` (``TimeoutError`` after ``timeout``)."""
        async with self._limits_moved:
            await asyncio.wait_for(self._limits_moved.wait_for(
                lambda: self._limits_seq >= seq), timeout)

    async def stop_watching(self) -> None:
        sub, self._limits_sub = self._limits_sub, None
        self._limits_ready = False
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def unlimited(self, user_id: str) -> bool:
        """Certainly no limit applies to ``user_id`` (no default, none set, watcher caught
        up): the budget check can skip reading the spend."""
        return (self.default_limit_usd is None and self._limits_ready
                and not self._limited.get(user_id, False))

    @property
    def _users(self) -> dict[str, UserSpend]:
        """The cached folds (kept for tests that look inside)."""
        return self.users.snapshot()

    async def user(self, user_id: str) -> UserSpend:
        """The user's fold, caught up with the log."""
        async with self.users.lock(user_id):
            spend = await self.users.refresh(user_id)
            self.note_limit(spend)
        return spend

    def note_limit(self, spend: UserSpend) -> None:
        """A read (or our own append) is as fresh as the watcher (fresher for this
        process's own commands)."""
        self._limited[spend.user_id] = spend.limit_set and spend.limit_usd is not None

    async def append_usage(self, user_id: str, env: EventEnvelope) -> AppendResult:
        """Append ``env`` (a usage event) to ``usage.<user_id>``; fold it into the cached
        fold when the append proves that it directly follows the fold's last event (see
        the module docstring). One such append per user at a time; others meanwhile append
        without the check (no conflicts between our own appends)."""
        agg = Aggregate("usage", user_id)
        spend = self.users.cached(user_id)
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
            async with self.users.lock(user_id):
                # A read that ran meanwhile may have folded it already: then after_seq moved.
                if self.users.cached(user_id) is spend and spend.after_seq == expected:
                    spend.apply(RecordedEvent(res.last_seq, agg.subject(env.type), env))
        return res

    def limit_of(self, spend: UserSpend) -> float | None:
        return spend.limit_usd if spend.limit_set else self.default_limit_usd

    async def status(self, user_id: str, period: str | None = None) -> BudgetStatus:
        """Limit and spend of ``user_id`` in ``period`` (default: the current one)."""
        spend = await self.user(user_id)
        period = period or period_of(self.clock())
        return BudgetStatus(user_id, period, self.limit_of(spend), spend.spent_usd(period))
