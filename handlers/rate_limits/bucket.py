"""Token buckets, pure: a level that refills at ``per_minute / 60`` per second up to
``per_minute``.

A limit of ``N`` per minute is a bucket of capacity ``N`` refilled at ``N / 60`` per
second: a user may spend a full minute's allowance at once, then one unit every
``60 / N`` seconds. Levels are floats and may go below zero (debt): a charge trued up
after the fact (the actual tokens of a call) is taken whole, and the user waits until
the bucket has refilled past what the next request needs.

A bucket remembers the capacity its level was computed for: when the limit changes (an
operator's override), what was used stays used — raising a limit from 1 to 5 with 1 used
leaves 4 at once; lowering it may leave the user in debt.

No I/O and no clock of its own: callers pass ``now`` (seconds since the epoch), so the
state can be shared between processes (``handlers.rate_limits.store``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

SECONDS_PER_MINUTE = 60.0


@dataclass(frozen=True)
class Bucket:
    """One dimension's ``level`` at time ``at`` (seconds since the epoch), for a limit of
    ``capacity`` per minute."""

    level: float
    at: float
    capacity: float

    @classmethod
    def full(cls, per_minute: int, now: float) -> Bucket:
        return cls(float(per_minute), now, float(per_minute))

    def refilled(self, per_minute: int, now: float) -> Bucket:
        """The level at ``now`` under a limit of ``per_minute``: first moved by a change
        of capacity, then refilled for the time elapsed (none when the clock went back),
        capped at the capacity."""
        level = self.level + (per_minute - self.capacity)
        elapsed = max(0.0, now - self.at)
        level = min(float(per_minute), level + elapsed * per_minute / SECONDS_PER_MINUTE)
        return Bucket(level, max(now, self.at), float(per_minute))

    def wait_for(self, amount: float) -> float:
        """Seconds until the level reaches ``amount`` (capped at the capacity, so a
        request larger than the whole bucket waits for a full one); 0 when it has."""
        need = min(float(amount), self.capacity)
        if self.level >= need:
            return 0.0
        return (need - self.level) * SECONDS_PER_MINUTE / self.capacity

    def take(self, amount: float) -> Bucket:
        return replace(self, level=self.level - amount)

    def to_json(self) -> list[float]:
        return [round(self.level, 6), self.at, self.capacity]

    @classmethod
    def from_json(cls, raw: Any) -> Bucket | None:
        """The stored form; None when malformed (the caller starts a full bucket)."""
        if (isinstance(raw, list) and len(raw) == 3
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw)
                and raw[2] > 0):
            return cls(float(raw[0]), float(raw[1]), float(raw[2]))
        return None
