"""Rate limits: per-user messages and tokens per minute, shared by every handler
process (a NATS KV bucket), checked before a generation appends anything or calls a
model (``rate_limited`` with ``details.retry_after_s``), set per user by operators.

The inner shape: ``bucket`` (token-bucket arithmetic), ``limits`` (defaults and
overrides), ``store`` (the KV state), ``service`` (admission and true-up), ``gate``
(where generations meet it), ``app`` (``ops.rate_limits.*`` subscribers)."""

from handlers.rate_limits.app import (
    bucket_name,
    open_rate_limiter,
    register_rate_limit_commands,
)
from handlers.rate_limits.errors import RateLimited
from handlers.rate_limits.gate import admit_generation, attach
from handlers.rate_limits.limits import Limits, Override
from handlers.rate_limits.service import RateLimiter, estimate_tokens

__all__ = ["Limits", "Override", "RateLimited", "RateLimiter", "admit_generation", "attach",
           "bucket_name", "estimate_tokens", "open_rate_limiter",
           "register_rate_limit_commands"]
