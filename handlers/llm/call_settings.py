"""Call settings of one model call, and the retry backoff schedule."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: attempt ``n`` (0-based) waits
    ``min(max_delay, initial_delay * multiplier**n)`` scaled by a random factor in
    ``[1 - jitter, 1]``. A provider's ``Retry-After`` (when given) replaces the computed
    delay, still capped at ``max_delay``."""

    initial_delay: float = 0.5
    max_delay: float = 8.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, *, retry_after: float | None = None,
              rng: random.Random | None = None) -> float:
        if retry_after is not None and retry_after >= 0:
            return min(self.max_delay, retry_after)
        base = min(self.max_delay, self.initial_delay * self.multiplier ** attempt)
        factor = 1.0 - self.jitter * (rng or random).random()
        return max(0.0, base * factor)


NO_BACKOFF = Backoff(initial_delay=0.0, max_delay=0.0, jitter=0.0)
"""Retry immediately: for tests and the zero-latency scripted model."""


@dataclass(frozen=True)
class CallSettings:
    """Sampling and reliability settings of a model call.

    ``None`` means "provider default" and is not sent. ``max_retries`` and ``timeout`` are
    enforced by threadlog, not litellm (litellm and the OpenAI SDK get ``max_retries=0``):
    ``timeout`` bounds a whole non-streaming attempt, and for streams the wait for each chunk.
    """

    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    timeout: float | None = 120.0
    max_retries: int = 2
    backoff: Backoff = field(default_factory=Backoff)

    def sampling_kwargs(self) -> dict[str, Any]:
        """The settings litellm receives (only those that are set)."""
        out: dict[str, Any] = {}
        for name in ("temperature", "max_tokens", "top_p", "seed",
                     "presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.stop:
            out["stop"] = list(self.stop)
        return out


DEFAULT_SETTINGS = CallSettings()
