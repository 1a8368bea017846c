"""Classification of provider failures: retry or not, and the threadlog error to raise.

Retried: HTTP 429, 408, 5xx, connection errors, timeouts (litellm's or ours).
Not retried: every other 4xx (bad request, authentication, permission, not found, context
window exceeded): the same request would fail again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from handlers.llm.errors import (
    PromptTooLarge,
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
    RateLimited,
)


@dataclass(frozen=True)
class FailedAttempt:
    """One failed attempt: whether it may be retried and the error to raise if it is last."""

    retryable: bool
    error: ProviderError
    retry_after: float | None = None


def _status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _retry_after(exc: BaseException) -> float | None:
    headers: Any = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    try:
        value = headers.get("retry-after")
        return float(value) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None


def classify_failure(exc: BaseException, *, model: str, provider: str | None,
                     call_id: str, attempts: int) -> FailedAttempt:
    """Map an exception raised by an attempt (litellm's, or our ``TimeoutError``)."""
    details: dict[str, Any] = {"model": model, "provider": provider, "call_id": call_id,
                               "attempts": attempts}
    status = _status_of(exc)
    if status is not None:
        details["status_code"] = status
    name = type(exc).__name__
    message = str(exc) or name
    if isinstance(exc, asyncio.TimeoutError | TimeoutError) or name in (
            "Timeout", "APITimeoutError") or status == 408:
        return FailedAttempt(True, ProviderTimeout(
            f"{model}: no answer within the timeout", details=details))
    if status == 429 or name == "RateLimitError":
        return FailedAttempt(True, RateLimited(f"{model}: rate limited: {message}",
                                               details=details), _retry_after(exc))
    if name == "ContextWindowExceededError":
        return FailedAttempt(False, PromptTooLarge(
            f"{model}: prompt exceeds the context window: {message}", details=details))
    if status is not None and 400 <= status < 500:
        return FailedAttempt(False, ProviderRejected(f"{model}: request rejected: {message}",
                                                     details=details))
    # 5xx and litellm's connection errors (status 500) are transient; an exception with no
    # status at all is not a provider answer (a bug, a bad argument): retrying cannot help.
    return FailedAttempt(status is not None, ProviderError(
        f"{model}: provider error: {message}", details=details))
