"""How a failing step is retried: attempts and exponential backoff.

Guarantees: attempt ``n`` (1-based) that fails is retried after
``initial_backoff * base ** (n - 1)`` seconds (capped by ``max_backoff``) while
``n < max_attempts``; the wait is a recorded ``retry_at`` plus a redelivery of the run at
that time, so it survives restarts. Failure modes: invalid numbers raise ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 1
    initial_backoff: float = 0.1
    base: float = 2.0
    max_backoff: float = 3_600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.initial_backoff < 0 or self.base < 1:
            raise ValueError("RetryPolicy needs max_attempts >= 1, initial_backoff >= 0, "
                             "base >= 1")

    def backoff(self, failed_attempt: int) -> float:
        """Seconds to wait after the ``failed_attempt``-th failure."""
        return min(self.max_backoff, self.initial_backoff * self.base ** (failed_attempt - 1))

    def will_retry(self, failed_attempt: int) -> bool:
        return failed_attempt < self.max_attempts


NO_RETRY = RetryPolicy()
