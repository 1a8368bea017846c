"""Generation-limit subscribers and the start of a process's :class:`GenerationSlots`.

- ``ops.generations.limit.set``: ``{max_parallelism}`` (0 pauses) -> status
- ``ops.generations.limit.get``: ``{}`` -> status

The status: ``{enabled, max_parallelism, paused, running, waiting, running_here,
waiting_here}`` (``enabled: false`` and nothing else where the limit is off).
"""

from __future__ import annotations

from typing import Any

from faststream.nats import NatsBroker
from nats.aio.client import Client as NATS

from events.replies import Reply
from handlers.generation_limits import subjects
from handlers.generation_limits.commands import GenerationLimitQuery, SetGenerationLimit
from handlers.generation_limits.service import GenerationLimits
from handlers.generation_limits.slots import GenerationSlots, SlotsConfig
from handlers.subjects import COMMAND_QUEUE


async def open_generation_slots(nc: NATS, events_stream: str, initial_limit: int,
                                config: SlotsConfig | None = None) -> GenerationSlots:
    """The stream and consumer (created on first use with ``initial_limit``; an existing
    consumer keeps its limit), bound; close with ``await slots.stop()``."""
    return await GenerationSlots(nc, events_stream, config or SlotsConfig()).start(
        initial_limit)


def register_generation_limit_commands(broker: NatsBroker, limits: GenerationLimits) -> None:
    @broker.subscriber(subjects.SET_GENERATION_LIMIT, queue=COMMAND_QUEUE,
                       title=subjects.SET_GENERATION_LIMIT,
                       description="Set the limit on generations running at once across "
                                   "every process (0 pauses; running ones finish).")
    async def set_generation_limit(body: SetGenerationLimit) -> dict[str, Any]:
        return Reply.success(await limits.set(body.max_parallelism)).model_dump(mode="json")

    @broker.subscriber(subjects.GET_GENERATION_LIMIT, queue=COMMAND_QUEUE,
                       title=subjects.GET_GENERATION_LIMIT,
                       description="The generation limit in force and how many generations "
                                   "hold or wait for a slot.")
    async def get_generation_limit(body: GenerationLimitQuery) -> dict[str, Any]:
        return Reply.success(await limits.status()).model_dump(mode="json")
