"""Where the generation slots meet generations: ``Generator.admission``.

:func:`attach` sets ``generator.admission`` so each saved generation holds a slot
(``handlers.generation_limits.slots``) from just before its first model call until its
steps end or pause for approval. The fast path, queue resumes and approval
continuations alike pass through it.

The hook sits in ``Generator.run_loop``, inside the generation's deadline and failure
path: a wait for a slot counts against ``deadline_s`` (past it: ``timeout``), an abort
(``cmd.agent.abort``, streamed or not) stops the wait and fails the generation with
``aborted`` before any model call, and an error while entering (NATS unavailable)
finalizes the pending message as failed like a step's error. A wait that ends either
way leaks no slot (``GenerationSlots.slot``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from events import ThreadlogError
from handlers.agents.commands import Generate
from handlers.generation_limits.slots import GenerationSlots


def attach(generator: Any, slots: GenerationSlots) -> None:
    """Limit ``generator``'s generations by ``slots`` (see the module)."""

    @contextlib.asynccontextmanager
    async def admission(cmd: Generate, abort: asyncio.Event) -> AsyncIterator[None]:
        async with slots.slot(cmd.command_id, abort=abort) as got:
            if not got:
                raise ThreadlogError("generation aborted while it waited for a slot",
                                     code="aborted",
                                     details={"command_id": cmd.command_id})
            yield

    generator.admission = admission
