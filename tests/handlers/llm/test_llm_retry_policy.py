"""Backoff schedule and which failures are retried."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest
from litellm import exceptions as litellm

from handlers.llm import Backoff, CallSettings
from handlers.llm.attempts import AttemptPlan
from handlers.llm.provider_errors import classify_failure


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    backoff = Backoff(initial_delay=0.5, max_delay=4.0, multiplier=2.0, jitter=0.5)
    rng = random.Random(1)
    for attempt, base in enumerate([0.5, 1.0, 2.0, 4.0, 4.0]):
        delays = [backoff.delay(attempt, rng=rng) for _ in range(200)]
        assert all(base * 0.5 <= d <= base for d in delays)
        assert max(delays) - min(delays) > base * 0.3  # jitter spreads retries
    assert backoff.delay(0, retry_after=2.5) == 2.5
    assert backoff.delay(0, retry_after=60) == 4.0


def _error(cls: type[Exception], status: int) -> Exception:
    response = httpx.Response(status, request=httpx.Request("POST", "http://x"))
    if cls is litellm.Timeout:
        return litellm.Timeout(message="slow", model="m", llm_provider="p")
    return cls(message="m", model="m", llm_provider="p", response=response)  # type: ignore[call-arg]


@pytest.mark.parametrize(("exc", "retryable", "code"), [
    (_error(litellm.RateLimitError, 429), True, "rate_limited"),
    (_error(litellm.InternalServerError, 500), True, "provider_error"),
    (_error(litellm.ServiceUnavailableError, 503), True, "provider_error"),
    (_error(litellm.Timeout, 408), True, "provider_timeout"),
    (TimeoutError(), True, "provider_timeout"),
    (_error(litellm.BadRequestError, 400), False, "provider_rejected"),
    (_error(litellm.AuthenticationError, 401), False, "provider_rejected"),
    (_error(litellm.ContextWindowExceededError, 400), False, "prompt_too_large"),
    (RuntimeError("bug"), False, "provider_error"),
])
def test_failures_are_classified(exc: Exception, retryable: bool, code: str) -> None:
    failure = classify_failure(exc, model="m", provider="p", call_id="c", attempts=1)
    assert (failure.retryable, failure.error.code) == (retryable, code)


def test_plan_retries_retryable_failures_then_falls_back() -> None:
    settings = CallSettings(max_retries=1)
    plan = AttemptPlan(["a", "b"], settings, "call", ["p", "p"])
    seen = []
    for attempt in plan:
        seen.append((attempt.model, attempt.retry))
        if attempt.model == "b":
            break  # success
        plan.failed(_error(litellm.InternalServerError, 500), attempt)
    assert seen == [("a", 0), ("a", 1), ("b", 0)]


def test_plan_skips_retries_of_a_rejected_request() -> None:
    plan = AttemptPlan(["a"], CallSettings(max_retries=3), "call", ["p"])
    for attempt in plan:
        plan.failed(_error(litellm.BadRequestError, 400), attempt)
    err = plan.error()
    assert plan.attempts == 1 and err.code == "provider_rejected"
    assert err.details["call_id"] == "call"


async def test_wait_before_sleeps_only_before_retries() -> None:
    plan = AttemptPlan(["a"], CallSettings(max_retries=1, backoff=Backoff(
        initial_delay=0.0, max_delay=0.0)), "c", ["p"])
    attempts = []
    for attempt in plan:
        await asyncio.wait_for(plan.wait_before(attempt), 1)
        attempts.append(attempt.retry)
        plan.failed(_error(litellm.RateLimitError, 429), attempt)
    assert attempts == [0, 1]
