"""The rate-limit refusal: code ``rate_limited``, with ``details.retry_after_s``."""

from __future__ import annotations

from events import ThreadlogError


class RateLimited(ThreadlogError):
    """The user has used up a rate limit. Details: ``user_id``, ``limit``
    (``messages_per_minute`` or ``tokens_per_minute``), ``per_minute``, ``retry_after_s``
    (seconds until the request would be admitted, > 0), ``needed`` and ``available``."""

    code = "rate_limited"
