"""How a failing workflow step is retried: :class:`RetryPolicy`, the one class shared
with work items (defined in ``scheduler.workpool.retry``; both public names work).

Guarantees: attempt ``n`` (1-based) that fails is retried after
``initial_backoff * base ** (n - 1)`` seconds (capped by ``max_backoff``) while
``n < max_attempts``; the wait is a recorded ``retry_at`` plus a redelivery of the run at
that time, so it survives restarts. A step run without ``retry=`` uses :data:`NO_RETRY`.
Failure modes: invalid numbers raise ``ValueError``.
"""

from __future__ import annotations

from scheduler.workpool.retry import RetryPolicy

__all__ = ["NO_RETRY", "RetryPolicy"]

NO_RETRY = RetryPolicy(max_attempts=1, initial_backoff=0.1)
"""A workflow step's default: one attempt (before the merge, ``RetryPolicy()`` of this
module meant this; its other defaults were those of ``RetryPolicy`` now)."""
