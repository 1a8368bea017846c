"""Per-user rate limits on generations: messages per minute and tokens per minute.

:meth:`RateLimiter.admit` runs at the entry of ``cmd.<u>.agent.generate``, before
anything is appended or a model is called. It takes one message and an estimate of the
call's tokens from the user's buckets (``handlers.rate_limits.bucket``) in one
compare-and-set of the shared state (``handlers.rate_limits.store``), or refuses with
:class:`RateLimited` (``rate_limited``, ``details.retry_after_s`` > 0) and takes nothing.

Tokens are trued up after the fact (:meth:`RateLimiter.charge_usage`, called for every
usage event the generation appends): the generation's first completion call replaces
the estimate by its actual ``total_tokens`` (the difference is taken, or given back);
later calls (tool steps, embeddings) are taken whole. A bucket may so go below zero: the
user then waits until it has refilled. The estimate is ``ceil(len(prompt) / 4)`` plus the
agent's ``max_tokens`` (else ``ASSUMED_COMPLETION_TOKENS``); the history in the context
is not counted until the true-up.

Guarantees
- Across processes: every charge is a compare-and-set on the user's key, so N processes
  admit together no more than one process would.
- A refusal appends nothing, calls nothing and takes nothing from the buckets.
- With no limit for the user (defaults 0 and no override, once the override watch has
  caught up) admission does no I/O at all.

Limits of the guarantee: a re-sent command (same ``command_id``) is admitted and charged
again (the command log's answer comes later); a generation resumed by the durable queue
in another process is not admitted again, and its usage is taken whole; a usage event
whose true-up fails (NATS down) is logged and not charged.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from handlers.rate_limits.bucket import Bucket
from handlers.rate_limits.errors import RateLimited
from handlers.rate_limits.limits import Limits, Override
from handlers.rate_limits.store import RateLimitStore, State

log = logging.getLogger(__name__)
ASSUMED_COMPLETION_TOKENS = 512
MAX_RESERVATIONS = 10_000
"""Estimates kept for their true-up (oldest dropped: that generation's usage is then
taken whole, on top of its estimate)."""


def estimate_tokens(prompt: str | None, max_tokens: int | None) -> int:
    """Prompt characters / 4, rounded up, plus the completion allowance."""
    completion = max_tokens if max_tokens is not None else ASSUMED_COMPLETION_TOKENS
    return math.ceil(len(prompt or "") / 4) + completion


@dataclass(frozen=True)
class Admission:
    user_id: str
    limits: Limits
    estimate: int


class RateLimiter:
    def __init__(self, store: RateLimitStore, defaults: Limits, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.defaults = defaults
        self.clock = clock
        self._estimates: OrderedDict[str, tuple[str, int]] = OrderedDict()
        """command id -> (user, tokens estimated), until its first completion's usage."""

    async def limits_of(self, user_id: str) -> Limits:
        if self.defaults.unlimited and self.store.ready.is_set() \
                and user_id not in self.store.overrides:
            return self.defaults
        override = await self.store.override(user_id)
        return override.over(self.defaults) if override is not None else self.defaults

    async def admit(self, user_id: str, estimate: int, command_id: str | None = None,
                    *, limits: Limits | None = None) -> Admission | None:
        """Take one message and ``estimate`` tokens, or raise :class:`RateLimited`.
        None: no limit applies (nothing was read or taken). ``limits``: the user's, when
        the caller read them already (:meth:`limits_of`)."""
        limits = limits if limits is not None else await self.limits_of(user_id)
        if limits.unlimited:
            return None
        now = self.clock()

        def decide(state: State) -> tuple[State | None, None]:
            m, t = _buckets(state, limits, now)
            waits = []
            if limits.messages_per_minute:
                waits.append(("messages_per_minute", limits.messages_per_minute, 1.0, m))
            if limits.tokens_per_minute:
                waits.append(("tokens_per_minute", limits.tokens_per_minute,
                              float(estimate), t))
            refusals = [(b.wait_for(need), name, per_minute, need, b)
                        for name, per_minute, need, b in waits]
            wait, name, per_minute, need, b = max(refusals, key=lambda r: r[0])
            if wait > 0:  # the longest wait: sooner, another limit would still refuse
                raise RateLimited(
                    f"user {user_id!r} is over the rate limit of {per_minute} "
                    f"{name.removesuffix('_per_minute')} per minute; retry in {wait:.1f} s",
                    details={"user_id": user_id, "limit": name, "per_minute": per_minute,
                             "retry_after_s": round(max(wait, 0.001), 3),
                             "needed": min(need, per_minute),
                             "available": round(b.level, 3)})
            new = dict(state)
            if limits.messages_per_minute:
                new["m"] = m.take(1).to_json()
            if limits.tokens_per_minute:
                new["t"] = t.take(estimate).to_json()
            return new, None

        await self.store.change(user_id, decide)
        if command_id is not None and limits.tokens_per_minute:
            self._estimates[command_id] = (user_id, estimate)
            while len(self._estimates) > MAX_RESERVATIONS:
                self._estimates.popitem(last=False)
        return Admission(user_id, limits, estimate)

    async def charge_usage(self, user_id: str, tokens: int, *, command_id: str | None,
                           kind: str = "completion") -> None:
        """True up: the first completion of an admitted command replaces its estimate,
        anything else is taken whole (see the module docstring)."""
        delta = float(tokens)
        if kind == "completion" and command_id is not None:
            held = self._estimates.pop(command_id, None)
            if held is not None and held[0] == user_id:
                delta -= held[1]
        limits = await self.limits_of(user_id)
        if not limits.tokens_per_minute or delta == 0:
            return
        now = self.clock()

        def decide(state: State) -> tuple[State | None, None]:
            _, t = _buckets(state, limits, now)
            level = min(t.level - delta, float(limits.tokens_per_minute))
            return {**state, "t": Bucket(level, t.at, t.capacity).to_json()}, None

        await self.store.change(user_id, decide)

    async def status(self, user_id: str) -> dict[str, Any]:
        """Limits in force, the override and the buckets' levels now."""
        limits = await self.limits_of(user_id)
        override = await self.store.override(user_id)
        m, t = _buckets(await self.store.state(user_id), limits, self.clock())
        return {"user_id": user_id, **limits.to_dict(),
                "override": override.to_dict() if override is not None else None,
                "defaults": self.defaults.to_dict(),
                "messages_available": round(m.level, 3) if limits.messages_per_minute
                else None,
                "tokens_available": round(t.level, 3) if limits.tokens_per_minute else None}

    async def set_override(self, user_id: str, override: Override | None) -> dict[str, Any]:
        await self.store.set_override(user_id, override)
        return await self.status(user_id)


def _buckets(state: State, limits: Limits, now: float) -> tuple[Bucket, Bucket]:
    """The two buckets refilled to ``now`` (a missing one is full)."""
    out = []
    for key, per_minute in (("m", limits.messages_per_minute), ("t", limits.tokens_per_minute)):
        if not per_minute:  # unlimited: not tracked
            out.append(Bucket(0.0, now, 1.0))
            continue
        b = Bucket.from_json(state.get(key)) or Bucket.full(per_minute, now)
        out.append(b.refilled(per_minute, now))
    return out[0], out[1]
