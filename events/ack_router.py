"""Pipelined request/reply for JetStream publish acks.

nats-py's ``js.publish_async`` leaves its future unresolved when the server answers with
an error (e.g. a failed ``Nats-Expected-Last-Subject-Sequence`` check), and
``nc.request`` costs a task per call. This router keeps one wildcard inbox subscription,
maps reply tokens to futures and fails them on a deadline swept twice a second, so many
appends can be in flight at once and every one of them gets an answer or a timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

_MISSING = object()


class AckRouter:
    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self._prefix = ""
        self._futures: dict[str, tuple[asyncio.Future[bytes], float]] = {}
        self._tokens = itertools.count(1)
        self._sub: Any = None
        self._sweeper: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def _start(self) -> None:
        async with self._lock:
            if self._sub is not None:
                return
            self._prefix = self.nc.new_inbox()
            self._sub = await self.nc.subscribe(self._prefix + ".*", cb=self._on_reply,
                                                pending_msgs_limit=-1, pending_bytes_limit=-1)
            self._sweeper = asyncio.create_task(self._sweep())

    async def _on_reply(self, msg: Msg) -> None:
        token = msg.subject[len(self._prefix) + 1:]
        entry = self._futures.pop(token, None)
        if entry is not None and not entry[0].done():
            entry[0].set_result(msg.data)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            t = time.monotonic()
            for token, (fut, deadline) in list(self._futures.items()):
                if deadline < t:
                    self._futures.pop(token, None)
                    if not fut.done():
                        fut.set_exception(TimeoutError())

    async def request(self, subject: str, payload: bytes, headers: dict[str, str],
                      timeout: float) -> bytes:
        """Publish with a reply inbox and await the reply bytes; ``TimeoutError`` after
        ``timeout`` seconds (at a 0.5 s granularity)."""
        if self._sub is None:
            await self._start()
        token = str(next(self._tokens))
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._futures[token] = (fut, time.monotonic() + timeout)
        await self._publish(subject, payload, f"{self._prefix}.{token}", headers)
        return await fut

    async def request_in_order(self, messages: list[tuple[str, bytes, dict[str, str]]],
                               timeout: float) -> list[bytes]:
        """Publish ``(subject, payload, headers)`` messages in this order, without waiting
        for one reply before sending the next, and await every reply (in order)."""
        if self._sub is None:
            await self._start()
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[bytes]] = []
        for subject, payload, headers in messages:
            token = str(next(self._tokens))
            fut: asyncio.Future[bytes] = loop.create_future()
            self._futures[token] = (fut, time.monotonic() + timeout)
            futures.append(fut)
            await self._publish(subject, payload, f"{self._prefix}.{token}", headers)
        return [await f for f in futures]

    async def _publish(self, subject: str, payload: bytes, reply: str,
                       headers: dict[str, str]) -> None:
        """``nc.publish`` without its per-header regex validation: our headers are known
        names with token, number or subject values. Anything unusual (a value with a line
        break, a big payload, a disconnected client, a nats-py without the internals)
        takes the public path."""
        nc = self.nc
        send = getattr(nc, "_send_command", None)
        flush_queue: Any = getattr(nc, "_flush_queue", _MISSING)
        if (send is None or flush_queue is _MISSING or not nc.is_connected
                or len(payload) > nc.max_payload
                or any("\r" in v or "\n" in v for v in headers.values())):
            await nc.publish(subject, payload, reply=reply, headers=headers)
            return
        hdr = b"NATS/1.0\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()).encode() + b"\r\n"
        await send(b"HPUB %s %s %d %d\r\n%s%s\r\n" % (
            subject.encode(), reply.encode(), len(hdr), len(hdr) + len(payload), hdr, payload))
        if flush_queue is not None and flush_queue.empty():
            await nc._flush_pending()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._sub is not None and not self.nc.is_closed:
            await self._sub.unsubscribe()
        self._sub = None
