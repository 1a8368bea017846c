"""The attempt schedule of one model step: retries with backoff, then fallback models.

For each model of ``[primary, *fallbacks]``: up to ``1 + max_retries`` attempts while the
failures are retryable (429, 408, 5xx, timeouts), waiting ``Backoff.delay`` between them.
A non-retryable failure (other 4xx) or exhausted retries moves on to the next model. When
every model has failed, ``error()`` is the last failure's threadlog error, with
``details['failures']`` summarising every attempt.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from handlers.llm.call_settings import CallSettings
from handlers.llm.errors import ProviderError
from handlers.llm.provider_errors import FailedAttempt, classify_failure


@dataclass(frozen=True)
class Attempt:
    model: str
    provider: str | None
    number: int
    """1-based count over the whole step (retries and fallbacks included)."""
    retry: int
    """0 for a model's first attempt, then 1, 2..."""


class AttemptPlan:
    """Iterate it for the attempts; report each failure with ``failed``; raise ``error()``
    after the loop. An attempt not followed by ``failed`` ends the iteration."""

    def __init__(self, models: Sequence[str], settings: CallSettings, call_id: str,
                 providers: Sequence[str | None], *, rng: random.Random | None = None) -> None:
        if not models:
            raise ValueError("at least one model is required")
        self._models = list(models)
        self._providers = list(providers)
        self._settings = settings
        self._call_id = call_id
        self._rng = rng
        self._last: FailedAttempt | None = None
        self._last_failed_now = False
        self._failures: list[dict[str, object]] = []
        self.attempts = 0

    def __iter__(self) -> Iterator[Attempt]:
        for model, provider in zip(self._models, self._providers, strict=True):
            for retry in range(self._settings.max_retries + 1):
                self.attempts += 1
                self._last_failed_now = False
                yield Attempt(model, provider, self.attempts, retry)
                if not self._last_failed_now or self._last is None or not self._last.retryable:
                    break

    def failed(self, exc: BaseException, attempt: Attempt) -> None:
        """Record that ``attempt`` raised ``exc`` (any exception but cancellation)."""
        self._last = classify_failure(exc, model=attempt.model, provider=attempt.provider,
                                      call_id=self._call_id, attempts=attempt.number)
        self._last_failed_now = True
        self._failures.append({"model": attempt.model, "code": self._last.error.code,
                               "message": self._last.error.message[:300]})

    async def wait_before(self, attempt: Attempt) -> None:
        """Sleep the backoff delay before a retry (nothing before a model's first attempt)."""
        if attempt.retry == 0:
            return
        retry_after = self._last.retry_after if self._last is not None else None
        delay = self._settings.backoff.delay(attempt.retry - 1, retry_after=retry_after,
                                             rng=self._rng)
        if delay > 0:
            await asyncio.sleep(delay)

    def error(self) -> ProviderError:
        """The error to raise once the plan is exhausted (the last failure's)."""
        if self._last is None:
            raise RuntimeError("AttemptPlan.error() called before any failure")
        err = self._last.error
        err.details["attempts"] = self.attempts
        if len(self._failures) > 1:
            err.details["failures"] = list(self._failures)
        return err
