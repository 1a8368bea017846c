"""Where the generation slots meet generations: ``Generator.admission``.

:func:`attach` sets ``generator.admission`` so each saved generation holds a slot
(``handlers.generation_limits.slots``) from just before its first model call until its
steps end or pause for approval. The fast path, queue resumes and approval
continuations alike pass through it.

The hook sits in ``Generator.run_loop``, inside the generation's deadline and failure
path: a wait for a slot counts against ``deadline_s`` (past it: ``timeout``), an abort
(``cmd.agent.abort``, streamed or not) stops the wait and fails the generation with
``aborted`` before any model call, and a wait that cannot end with a slot (the process
stops, NATS unreachable) leaves it unfinished: ``handlers.agents.durable.NotStarted``
(nothing ran, nothing is finalized; its queue message goes back to the queue at once
for another worker). A wait that ends either way leaks no slot.

Not for nested generations: a tool that runs another generation while its own holds a
slot needs a second one; with every slot held by such outer generations, they wait for
each other (until their ``deadline_s``, if any). Every handler process of a deployment
needs the same setting: one without it takes no slot (and may answer
``ops.generations.limit.get`` with ``enabled: false``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from events import ThreadlogError, Unavailable
from handlers.agents.commands import Generate
from handlers.agents.durable import NotStarted
from handlers.generation_limits.slots import GenerationSlots


def attach(generator: Any, slots: GenerationSlots) -> None:
    """Limit ``generator``'s generations by ``slots`` (see the module)."""

    @contextlib.asynccontextmanager
    async def admission(cmd: Generate, abort: asyncio.Event) -> AsyncIterator[None]:
        try:
            msg = await slots.acquire(cmd.command_id, abort=abort)
        except Unavailable as exc:  # stopping, or NATS unreachable: nothing ran
            raise NotStarted(f"generation {cmd.command_id!r} did not start: {exc.message}",
                             details={"command_id": cmd.command_id}) from exc
        if msg is None:
            raise ThreadlogError("generation aborted while it waited for a slot",
                                 code="aborted", details={"command_id": cmd.command_id})
        try:
            yield
        finally:
            await slots.release(msg)

    generator.admission = admission
