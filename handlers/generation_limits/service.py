"""The operators' side of the generation limit: read it and change it live.

Guarantees: :meth:`GenerationLimits.set` writes the shared consumer's configuration
(``events.consumer_limits``): every process sees it at its next pull, at once; 0 pauses.
The status read after a change shows it (the write re-reads until visible).

Failure modes: a process started without ``generation_parallelism`` refuses changes
with :class:`LimitNotEnabled` (``not_enabled``) and reports ``enabled: false``; NATS
errors surface as ``unavailable``.
"""

from __future__ import annotations

from typing import Any

from nats.js import JetStreamContext

from events import Unavailable
from events.consumer_limits import write_limit
from handlers.generation_limits.errors import LimitNotEnabled
from handlers.generation_limits.slots import CONSUMER, GenerationSlots, SlotsLayout, read_status


class GenerationLimits:
    def __init__(self, js: JetStreamContext, events_stream: str,
                 slots: GenerationSlots | None) -> None:
        self.js = js
        self.layout = SlotsLayout(events_stream)
        self.slots = slots
        """This process's slots; None when the limit is off here."""

    async def status(self) -> dict[str, Any]:
        """``{enabled, max_parallelism, paused, running, waiting, waiting_here,
        running_here}`` (counts: see :class:`SlotsStatus`; ``*_here``: this process)."""
        if self.slots is None:
            return {"enabled": False, "max_parallelism": None}
        st = await read_status(self.js, self.layout)
        if st is None:
            raise Unavailable(f"the consumer {CONSUMER!r} of {self.layout.stream!r} is "
                              "missing (deleted while running?)")
        return {"enabled": True, **st.to_dict(), "running_here": self.slots.held_here,
                "waiting_here": self.slots.waiting_here}

    async def set(self, max_parallelism: int) -> dict[str, Any]:
        if self.slots is None:
            raise LimitNotEnabled(
                "generations run without a limit in this deployment: start the handler "
                "processes with THREADLOG_GENERATION_PARALLELISM to enable it",
                details={"setting": "THREADLOG_GENERATION_PARALLELISM"})
        await write_limit(self.js, self.layout.stream, CONSUMER, max_parallelism)
        return await self.status()
