"""Rate-limit command and query models (strict input, like every command)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from events import SafeId
from handlers.commands import STRICT_INPUT, Command
from handlers.rate_limits.limits import MAX_PER_MINUTE


class SetRateLimits(Command):
    """Set the limits of ``user_id``: a count per minute, ``0`` unlimited, ``null`` (or
    left out) the deployment's default. Both ``null`` removes the override. The effect is
    the same for a re-sent command (it writes the same override)."""

    messages_per_minute: int | None = Field(None, ge=0, le=MAX_PER_MINUTE)
    tokens_per_minute: int | None = Field(None, ge=0, le=MAX_PER_MINUTE)


class RateLimitsQuery(BaseModel):
    """The limits in force for ``user_id`` and the levels of its buckets."""

    model_config = STRICT_INPUT

    user_id: SafeId
