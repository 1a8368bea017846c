"""Watchers that deliver what nats-py's KV watcher can deliver under load, on demand."""

from __future__ import annotations

from typing import Any


class MarkerFirst:
    """A watcher that reports "no initial values" before any stored value reaches it
    (nats-py puts that marker when the consumer reports nothing undelivered and the
    client has processed nothing yet: under load, while a value is still on its way)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.sent_marker = False

    async def updates(self, timeout: float = 5.0) -> Any:
        if not self.sent_marker:
            self.sent_marker = True
            return None
        return await self.real.updates(timeout=timeout)

    async def stop(self) -> None:
        await self.real.stop()
