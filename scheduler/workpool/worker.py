"""A worker: pulls a pool's WORK messages and handles each in its own task.

Every worker process of a pool binds to the same durable pull consumer and keeps one pull
request (for one message) open while it has a free local slot (``concurrency``); the
server hands out at most ``max_parallelism`` unacknowledged messages across all of them
together, and serves a waiting request as soon as an ack frees a slot.

Guarantees: a message is acked only after its item's outcome is in the log (see
``scheduler.workpool.item``). :meth:`Worker.stop` stops fetching, lets running items
finish for ``drain_timeout`` seconds, then cancels the rest and NAKs their messages so
another worker takes them at once (their attempts are recorded as lost).

Failure modes: a process killed outright acks nothing: its messages are redelivered to a
live worker after ``ack_wait`` (the pool's), and so are messages that had reached this
process's buffer but no handler yet. A handler that raises (e.g. the event store is
unreachable) is logged; its message is left unacked and redelivered after ``ack_wait``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from types import TracebackType
from typing import Any

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from events.ids import new_id
from events.store import EventStore
from scheduler.workpool.item import ItemHandler
from scheduler.workpool.limits import PoolLayout, ensure_consumer
from scheduler.workpool.registry import Registry

log = logging.getLogger(__name__)
FETCH_TIMEOUT_S = 0.5
"""How long one pull request waits; also how long :meth:`Worker.stop` may wait for it."""


class Worker:
    """Runs a pool's registered functions in this process (an async context manager)."""

    def __init__(self, store: EventStore, js: JetStreamContext, layout: PoolLayout,
                 registry: Registry, *, ack_wait: float, concurrency: int = 8,
                 drain_timeout: float = 10.0, worker_id: str | None = None) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.layout, self.registry, self.js = layout, registry, js
        self.ack_wait, self.concurrency, self.drain_timeout = ack_wait, concurrency, drain_timeout
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{new_id()[:6]}"
        self.handler = ItemHandler(store, js, layout, registry, worker_id=self.worker_id,
                                   ack_wait=ack_wait)
        self._loop_task: asyncio.Task[None] | None = None
        self._inflight: dict[asyncio.Task[None], Msg] = {}
        self._stopping = asyncio.Event()

    async def start(self) -> Worker:
        """Register this process's functions on the consumer's filter and start pulling."""
        await ensure_consumer(self.js, self.layout, ack_wait=self.ack_wait,
                              functions=self.registry.names(), max_parallelism=None)
        sub = await self.js.pull_subscribe_bind(self.layout.consumer, stream=self.layout.stream)
        self._loop_task = asyncio.create_task(self._pull(sub), name=f"workpool-{self.layout.pool}")
        return self

    @property
    def busy(self) -> int:
        """Items this worker is handling now."""
        return len(self._inflight)

    async def _pull(self, sub: Any) -> None:
        try:
            while not self._stopping.is_set():
                if len(self._inflight) >= self.concurrency:
                    await asyncio.wait(set(self._inflight), return_when=asyncio.FIRST_COMPLETED)
                    continue
                # One message per pull request: nats-py's fetch(n > 1) holds the messages
                # it got until it has n or times out (measured: items waited ~1 s for a
                # slot that was free), so we ask again as soon as one arrives.
                try:
                    msgs = await sub.fetch(1, timeout=FETCH_TIMEOUT_S)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                for msg in msgs:
                    task = asyncio.create_task(self._handle(msg))
                    self._inflight[task] = msg
                    task.add_done_callback(self._inflight.pop)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _handle(self, msg: Msg) -> None:
        try:
            await self.handler.handle(msg)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("workpool %s: handling %s failed; it will be redelivered",
                          self.layout.pool, msg.subject)

    async def stop(self) -> None:
        """Stop pulling, drain (see the module docstring), and return."""
        self._stopping.set()
        if self._loop_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=self.drain_timeout)
            for task in pending:
                msg = self._inflight.get(task)
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                if msg is not None:
                    with contextlib.suppress(Exception):
                        await msg.nak()

    async def __aenter__(self) -> Worker:
        return await self.start()

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
