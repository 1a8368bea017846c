"""Which limits apply to a user: the deployment's defaults, or an operator's override.

Each dimension is a count per minute; ``0`` means unlimited. An override names either
dimension or both; a dimension it leaves out (``None``) keeps the default. Defaults come
from Settings (``THREADLOG_RATE_MESSAGES_PER_MINUTE``, ``THREADLOG_RATE_TOKENS_PER_MINUTE``)
and apply to every user a command acts for, whichever role's connection sent it (the
handler sees the subject's user, not the sender's role).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_PER_MINUTE = 1_000_000_000


@dataclass(frozen=True)
class Limits:
    messages_per_minute: int = 0
    """Generations a user may start per minute (0: unlimited)."""
    tokens_per_minute: int = 0
    """Model tokens (prompt + completion, all steps) a user may use per minute (0: unlimited)."""

    @property
    def unlimited(self) -> bool:
        return self.messages_per_minute == 0 and self.tokens_per_minute == 0

    def to_dict(self) -> dict[str, Any]:
        return {"messages_per_minute": self.messages_per_minute,
                "tokens_per_minute": self.tokens_per_minute}


@dataclass(frozen=True)
class Override:
    """An operator's per-user limits (``ops.rate_limits.set``); ``None`` keeps the default."""

    messages_per_minute: int | None = None
    tokens_per_minute: int | None = None

    def over(self, defaults: Limits) -> Limits:
        return Limits(
            defaults.messages_per_minute if self.messages_per_minute is None
            else self.messages_per_minute,
            defaults.tokens_per_minute if self.tokens_per_minute is None
            else self.tokens_per_minute)

    def to_dict(self) -> dict[str, Any]:
        return {"messages_per_minute": self.messages_per_minute,
                "tokens_per_minute": self.tokens_per_minute}

    @classmethod
    def from_dict(cls, raw: Any) -> Override | None:
        """The override stored in the bucket; None for anything malformed."""
        if not isinstance(raw, dict):
            return None
        vals = [raw.get("messages_per_minute"), raw.get("tokens_per_minute")]
        if not all(v is None or (type(v) is int and 0 <= v <= MAX_PER_MINUTE) for v in vals):
            return None
        return cls(vals[0], vals[1])
