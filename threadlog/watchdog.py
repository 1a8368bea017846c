"""Processes that heal, or exit so a supervisor restarts them: never alive and deaf.

Every NATS connection of a threadlog process reconnects for as long as it takes (nats-py
``max_reconnect_attempts=-1``, 2 s between attempts). The :class:`ConnectionWatchdog`
watches them: when any has been disconnected for longer than ``down_limit_s``,
:meth:`ConnectionWatchdog.failed` raises :class:`Unavailable` (``threadlog serve`` then
exits non-zero, so a supervisor restarts it). ``down_limit_s=None`` never gives up.

Guarantees: ``healthy`` is True only while every watched connection is connected; the
bound is measured from the first moment a connection was seen down, and resets when it
is back. Failure modes: none of its own (it only reads connection state).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from events.errors import Unavailable

CHECK_EVERY_S = 0.5


class ConnectionWatchdog:
    def __init__(self, connections: Callable[[], Sequence[Any]],
                 down_limit_s: float | None) -> None:
        self._connections = connections
        self.down_limit_s = down_limit_s
        self.down_since: float | None = None

    @property
    def healthy(self) -> bool:
        return all(getattr(c, "is_connected", False) for c in self._connections())

    def down_for(self) -> float:
        """Seconds the current outage has lasted (0 when every connection is up)."""
        return 0.0 if self.down_since is None else time.monotonic() - self.down_since

    async def failed(self) -> None:
        """Return never while the connections heal in time; raise :class:`Unavailable`
        once one has been down for longer than ``down_limit_s``."""
        while True:
            if self.healthy:
                self.down_since = None
            elif self.down_since is None:
                self.down_since = time.monotonic()
            elif self.down_limit_s is not None and self.down_for() > self.down_limit_s:
                raise Unavailable(
                    f"NATS has been unreachable for {self.down_for():.0f} s (limit "
                    f"{self.down_limit_s:g} s): exiting so a supervisor can restart this "
                    "process", details={"down_s": round(self.down_for(), 1)})
            await asyncio.sleep(CHECK_EVERY_S)  # a periodic check, not a wait for state
