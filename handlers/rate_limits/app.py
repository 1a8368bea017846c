"""Rate-limit subscribers and the start of a process's :class:`RateLimiter`.

- ``ops.rate_limits.set``: ``{command_id, user_id, messages_per_minute?,
  tokens_per_minute?}`` -> status
- ``ops.rate_limits.get``: ``{user_id}`` -> status

The status: ``{user_id, messages_per_minute, tokens_per_minute, override, defaults,
messages_available, tokens_available}`` (limits in force; 0 is unlimited).
"""

from __future__ import annotations

from typing import Any

from faststream.nats import NatsBroker
from nats.js import JetStreamContext

from events.replies import Reply
from handlers.rate_limits import subjects
from handlers.rate_limits.commands import RateLimitsQuery, SetRateLimits
from handlers.rate_limits.limits import Limits, Override
from handlers.rate_limits.service import RateLimiter
from handlers.rate_limits.store import RateLimitStore
from handlers.subjects import COMMAND_QUEUE


def bucket_name(events_stream: str) -> str:
    return f"{events_stream}_rate_limits"


async def open_rate_limiter(js: JetStreamContext, events_stream: str, defaults: Limits, *,
                            replicas: int = 1) -> RateLimiter:
    """The bucket (created on first use), its override watch caught up; close with
    ``await limiter.store.close()``."""
    store = await RateLimitStore.open(js, bucket_name(events_stream), replicas)
    await store.watch_overrides()
    return RateLimiter(store, defaults)


def register_rate_limit_commands(broker: NatsBroker, limiter: RateLimiter) -> None:
    @broker.subscriber(subjects.SET_RATE_LIMITS, queue=COMMAND_QUEUE,
                       title=subjects.SET_RATE_LIMITS,
                       description="Set a user's rate limits (per minute; 0 unlimited, null "
                                   "the default; both null removes the override).")
    async def set_rate_limits(body: SetRateLimits) -> dict[str, Any]:
        override = Override(body.messages_per_minute, body.tokens_per_minute)
        if override.messages_per_minute is None and override.tokens_per_minute is None:
            status = await limiter.set_override(body.user_id, None)
        else:
            status = await limiter.set_override(body.user_id, override)
        return Reply.success(status).model_dump(mode="json")

    @broker.subscriber(subjects.GET_RATE_LIMITS, queue=COMMAND_QUEUE,
                       title=subjects.GET_RATE_LIMITS,
                       description="A user's rate limits in force and what is left now.")
    async def get_rate_limits(body: RateLimitsQuery) -> dict[str, Any]:
        return Reply.success(await limiter.status(body.user_id)).model_dump(mode="json")
