"""Retry behaviour of work items and workflow steps: :class:`RetryPolicy` (the one class
of both: ``scheduler.workflows.RetryPolicy`` is this class) and :class:`NonRetryableError`.

Guarantees: the policy an item runs under is fixed when it is enqueued (recorded in
``work_enqueued``), so changing a pool's default later does not change queued items.
The delay before attempt ``n + 1`` is ``initial_backoff * base ** (n - 1)`` seconds
(``± jitter`` as a fraction), and it is *durable*: the due time is an event and the next
attempt is a JetStream scheduled message (see ``scheduler.workpool.limits``), never an
in-memory sleep.

Failure modes: a function raising :class:`NonRetryableError` (or any subclass) fails the
item at once, whatever attempts are left. A worker lost mid-attempt (killed, partitioned
past ``ack_wait``) counts as a failed attempt (``error_type`` ``"WorkerLost"``) and is
retried up to :data:`LOST_ATTEMPTS` attempts even when the item has no retry policy.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from events.work_events import RetrySpec


class NonRetryableError(Exception):
    """Raise from a work function to fail the item now, without further attempts."""


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` counts the first run (1 = never retry); seconds for backoff.

    Attempt ``n`` (1-based) that fails is retried while ``n < max_attempts``, after
    ``initial_backoff * base ** (n - 1)`` seconds, ``± jitter`` as a fraction, capped at
    ``max_backoff``. The defaults (5 attempts from 0.25 s, doubling) are Convex
    Workpool's; a workflow step without ``retry=`` is not retried (``NO_RETRY`` of
    ``scheduler.workflows.retry``). A work item records its policy without the cap
    (``RetrySpec``): its delays use the default ``max_backoff``.

    Failure modes: invalid numbers raise ``ValueError``."""

    max_attempts: int = 5
    initial_backoff: float = 0.25
    base: float = 2.0
    jitter: float = 0.0
    max_backoff: float = 3_600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if (self.initial_backoff < 0 or self.base < 1 or not 0 <= self.jitter <= 1
                or self.max_backoff < 0):
            raise ValueError("need initial_backoff >= 0, base >= 1, 0 <= jitter <= 1 and "
                             "max_backoff >= 0")

    def backoff(self, failed_attempt: int) -> float:
        """Seconds to wait after the ``failed_attempt``-th failure (1-based)."""
        return _delay(self.initial_backoff, self.base, self.jitter, self.max_backoff,
                      failed_attempt)

    def will_retry(self, failed_attempt: int) -> bool:
        """Whether another attempt follows the ``failed_attempt``-th failure."""
        return failed_attempt < self.max_attempts

    def spec(self) -> RetrySpec:
        return RetrySpec(max_attempts=self.max_attempts, initial_backoff=self.initial_backoff,
                         base=self.base, jitter=self.jitter)

    @classmethod
    def from_spec(cls, spec: RetrySpec) -> RetryPolicy:
        return cls(spec.max_attempts, spec.initial_backoff, spec.base, spec.jitter)


NO_RETRY = RetryPolicy(max_attempts=1)
DEFAULT_RETRY = RetryPolicy()
LOST_ATTEMPTS = 3
"""Attempts an item gets when its workers are lost (killed mid-attempt), even without a
retry policy: a dead worker's item is redelivered and run again (invariant 10), but an
item that kills every worker it runs on stops after this many."""


def resolve(retry: RetryPolicy | bool | None, pool_default: RetryPolicy | bool) -> RetryPolicy:
    """The policy of one item. ``None`` = the pool's default; ``True`` = the pool's policy
    if it has one, else :data:`DEFAULT_RETRY`; ``False`` = no retries."""
    if retry is None:
        retry = pool_default
    if retry is True:
        return pool_default if isinstance(pool_default, RetryPolicy) else DEFAULT_RETRY
    if retry is False:
        return NO_RETRY
    return retry


def _delay(initial: float, base: float, jitter: float, cap: float,
           failed_attempt: int) -> float:
    delay = min(cap, initial * base ** (failed_attempt - 1))
    if jitter:
        delay *= 1 + random.uniform(-jitter, jitter)
    return max(0.0, delay)


def backoff(spec: RetrySpec, failed_attempt: int) -> float:
    """Seconds to wait after attempt ``failed_attempt`` (1-based) of a work item failed
    (capped at the default ``max_backoff``: the record has no cap)."""
    return _delay(spec.initial_backoff, spec.base, spec.jitter,
                  RetryPolicy.max_backoff, failed_attempt)


def will_retry(spec: RetrySpec, failed_attempt: int, error: BaseException | None) -> bool:
    """Whether another attempt follows ``failed_attempt`` (``error`` None: worker lost,
    retried up to :data:`LOST_ATTEMPTS` attempts even without a retry policy)."""
    if isinstance(error, NonRetryableError):
        return False
    if error is None:
        return failed_attempt < max(spec.max_attempts, LOST_ATTEMPTS)
    return failed_attempt < spec.max_attempts
