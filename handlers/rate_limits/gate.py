"""Where rate limits meet generations: the admission at the entry of the generate
subscriber and the true-up of every usage event a generation appends.

``attach(generator, limiter)`` (the runtime does it) makes :func:`admit_generation` —
called first thing by ``cmd.<u>.agent.generate`` (``handlers.agents.app``) — check the
command against ``limiter``, and wraps ``generator.append_usage`` so each usage event
appended is charged (:meth:`RateLimiter.charge_usage`, linked to its command by the
envelope's ``correlation_id``). A generator with nothing attached is not limited
(``admit_generation`` returns at once).

Failure modes: :class:`RateLimited` or ``unavailable`` (the shared state unreachable)
from :func:`admit_generation`, before anything is appended; a failed true-up is logged
and does not fail the generation (its usage is already appended).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from events import Aggregate
from events.envelope import EventEnvelope
from handlers.agents.commands import Generate
from handlers.agents.progress import progress
from handlers.rate_limits.service import RateLimiter, estimate_tokens

log = logging.getLogger(__name__)
AppendUsage = Callable[[str, EventEnvelope], Awaitable[Any]]

_LIMITERS: weakref.WeakKeyDictionary[Any, RateLimiter] = weakref.WeakKeyDictionary()


def attach(generator: Any, limiter: RateLimiter) -> None:
    """Limit ``generator``'s generations served over ``cmd.<u>.agent.generate`` and
    charge the usage it appends (see the module docstring)."""
    _LIMITERS[generator] = limiter
    inner: AppendUsage | None = generator.append_usage

    async def append_usage(user_id: str, env: EventEnvelope) -> Any:
        res = await inner(user_id, env) if inner is not None \
            else await generator.store.append(Aggregate("usage", user_id), [env])
        if not getattr(res, "duplicate", False):
            await _true_up(limiter, user_id, env)
        return res

    generator.append_usage = append_usage


async def admit_generation(generator: Any, cmd: Generate) -> None:
    """Refuse ``cmd`` with ``rate_limited`` when its user is over a limit (no-op when
    ``generator`` has no limiter attached).

    A re-sent command whose generation is already on its thread (running, paused or
    finished) is not a new generation: it is neither refused nor charged again, so a
    client retrying after a lost reply gets the recorded result (or waits for the
    running generation) even at its limit. Only a limited user's command pays for that
    check (one read of the thread's cached state)."""
    limiter = _LIMITERS.get(generator)
    if limiter is None:
        return
    limits = await limiter.limits_of(cmd.user_id)
    if limits.unlimited or await _already_on_thread(generator, cmd):
        return
    try:
        max_tokens = generator.agents.get(cmd.agent).call_settings.max_tokens
    except Exception:  # an unknown agent: the generation refuses it right after
        max_tokens = None
    await limiter.admit(cmd.user_id, estimate_tokens(cmd.prompt, max_tokens), cmd.command_id,
                        limits=limits)


async def _already_on_thread(generator: Any, cmd: Generate) -> bool:
    """Whether ``cmd``'s generation has its pending message on the thread already; a
    thread that cannot be read counts as not (the generation then answers why)."""
    try:
        state = await generator.runner.states.get(cmd.thread_id)
    except Exception:
        return False
    return progress(state, cmd.command_id) is not None


async def _true_up(limiter: RateLimiter, user_id: str, env: EventEnvelope) -> None:
    usage = env.data.get("usage") or {}
    tokens = int(usage.get("total_tokens") or 0) or \
        int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
    try:
        await limiter.charge_usage(user_id, tokens, command_id=env.correlation_id,
                                   kind=str(env.data.get("kind") or "completion"))
    except Exception as exc:
        log.warning("rate limits: usage of %s not charged (%d tokens): %s",
                    user_id, tokens, exc)
