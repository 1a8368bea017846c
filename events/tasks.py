"""Stopping background tasks for sure.

On Python 3.11 ``asyncio.wait_for`` drops a cancellation that arrives in the same loop
iteration as the wait it guards completes (fixed in 3.12); nats-py waits through
``wait_for`` (``fetch``, ``next_msg``, a KV watcher's ``updates``). A loop around such
a wait, cancelled once, can carry on: ``task.cancel(); await task`` then waits for as
long as the loop runs (seen: a runtime's shutdown waiting for a KV change, an hour).
:func:`cancel_and_wait` cancels again until the tasks end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]], *, grace: float = 1.0,
                          rounds: int = 100, every: float = 0.1) -> None:
    """Cancel ``tasks`` and wait for them to end: ``grace`` seconds for the cleanup a
    cancelled task does (a nak, a final append), then cancelled again every ``every``
    seconds (at most ``rounds`` times). Their results and exceptions are consumed.
    Failure mode: a task still running after that (it catches every cancellation) is
    logged and left running."""
    left = {t for t in tasks if not t.done()}
    for t in left:
        t.cancel()
    if left:
        _, left = await asyncio.wait(left, timeout=grace)
    for _ in range(rounds):
        if not left:
            break
        for t in left:
            t.cancel()
        _, left = await asyncio.wait(left, timeout=every)
    for t in left:
        log.warning("task %r did not stop when cancelled %d times", t, rounds)
