"""Long-running CLI commands (``serve``, ``cluster handlers``) stop cleanly on SIGINT and
SIGTERM: the signal cancels the command's task, so its ``async with`` blocks (NATS
connections, the embedded server, the projector) run their exits before the process
ends."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any

from rich.console import Console


async def until_signalled(main: Coroutine[Any, Any, None], console: Console) -> None:
    """Run ``main`` until it ends or SIGINT/SIGTERM cancels it (then print "stopped")."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(main)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        console.print("[dim]stopped[/]")
