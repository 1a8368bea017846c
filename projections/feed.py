"""An ordered push consumer of the EVENTS stream on a lean NATS connection of its own.

Why not nats-py's subscription: its per-message path (regex parser, ``Msg`` objects, a task
per ``next_msg``) tops out near 40k messages/s on 2 cores, below the projector's target.
This feed speaks the small part of the NATS protocol a push consumer needs (CONNECT, SUB,
UNSUB, PUB for flow control, PING/PONG, MSG/HMSG) over an ``asyncio.Protocol`` and hands
out ``(stream_seq, subject, payload)`` in batches. The consumer itself is created with
nats-py's JetStream API (``JetStreamManager.add_consumer``).

Guarantees
- Order and no gaps: every event of the stream at or after ``from_seq`` is handed out
  once, in stream order (purged sequences are simply absent). The consumer sequence of
  each delivery and of each idle heartbeat is checked; on a gap, on a "consumer deleted"
  status, or after three missed heartbeats the consumer is recreated from the last
  handed-out sequence + 1 on a fresh deliver subject (what nats-py's ordered consumer
  does), so nothing is skipped or repeated.
- Backpressure: a flow-control request is answered only while fewer than ``high_water``
  events received before it wait to be taken, and the socket stops being read above
  ``high_water`` buffered events, so memory stays bounded whatever the consumer's pace.

Failure modes: a closed connection raises :class:`events.Unavailable` from :meth:`take`
(the projector restarts the feed from its checkpoint). TLS servers are not supported by
this feed (``Unavailable`` at start); credentials in the URL (user:password or token) are,
and so are NATS credentials files (an :class:`events.connection.NatsEndpoint` with
``creds``): the feed waits for the server's INFO and signs its nonce with the seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote, urlparse

from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from events.connection import NatsEndpoint
from events.errors import Unavailable
from events.ids import new_id

_CRLF = b"\r\n"
Item = tuple[int, bytes, bytes]
"""``(stream sequence, subject, payload)`` of one event."""
_STATUS_PREFIX = b"NATS/1.0 "


class _Protocol(asyncio.Protocol):
    def __init__(self, feed: OrderedFeed) -> None:
        self.feed = feed
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.feed._lost(exc)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        size = len(buf)
        feed = self.feed
        on_msg = feed._on_msg
        received = False
        while True:
            end = buf.find(_CRLF, pos)
            if end < 0:
                break
            first = buf[pos]
            if first == 72 or first == 77:  # HMSG / MSG
                parts = bytes(buf[pos:end]).split(b" ")
                total = int(parts[-1])
                start = end + 2
                if start + total + 2 > size:
                    break
                if first == 72:
                    hlen = int(parts[-2])
                    reply = parts[3] if len(parts) == 6 else b""
                else:
                    hlen = 0
                    reply = parts[3] if len(parts) == 5 else b""
                if hlen and buf.startswith(_STATUS_PREFIX, start):
                    feed._on_status(int(parts[2]), bytes(buf[start:start + hlen]), reply)
                else:
                    on_msg(int(parts[2]), parts[1], reply,
                           bytes(buf[start + hlen:start + total]))
                    received = True
                pos = start + total + 2
            else:
                line = bytes(buf[pos:end])
                pos = end + 2
                feed._on_control(line)
        del buf[:pos]
        if received:  # once per read, not per message
            feed._received_some()


class OrderedFeed:
    """Ordered delivery of ``(seq, subject, payload)`` from ``from_seq``; see the module
    docstring."""

    def __init__(self, url: str | NatsEndpoint, nc: NATS, stream: str, *,
                 subject: str = "events.>",
                 heartbeat_s: float = 2.0, high_water: int = 20_000,
                 before_reset: Callable[[], Awaitable[None]] | None = None) -> None:
        self.endpoint = url if isinstance(url, NatsEndpoint) else NatsEndpoint.of(url)
        self.url = self.endpoint.url
        self.nc = nc
        self._info: asyncio.Future[dict[str, Any]] | None = None
        self.stream = stream
        self.subject = subject
        self.heartbeat_s = heartbeat_s
        self.high_water = high_water
        self.before_reset = before_reset
        """Awaited before the consumer is recreated (a gap, a deleted consumer, missed
        heartbeats: the stream may have been recreated or lost its tail); what it raises
        propagates from :meth:`take` (the projector checks the stream against its
        checkpoint here)."""
        self.pending = -1
        """Events left in the stream after the last one received (-1: unknown yet)."""
        self.resets = 0
        self._items: deque[Item] = deque()
        self._fc: deque[tuple[int, bytes]] = deque()
        self._received = 0
        self._taken = 0
        self._sid = 0
        self._dseq = 0
        self._last_seq = 0
        self._last_reply = b"0"
        self._consumer: str | None = None
        self._needs_reset = False
        self._error: BaseException | None = None
        self._ready = asyncio.Event()
        self._pong: asyncio.Future[None] | None = None
        self._last_activity = time.monotonic()
        self._paused = False
        self._proto: _Protocol | None = None
        self._closed = False

    # ----------------------------------------------------------------- lifecycle
    async def start(self, from_seq: int) -> None:
        """Connect and start delivery at ``from_seq`` (>= 1)."""
        u = urlparse(self.url)
        if u.scheme not in ("nats", ""):
            raise Unavailable(f"the projector feed supports nats:// URLs only, not {self.url!r}")
        loop = asyncio.get_running_loop()
        self._info = loop.create_future()
        try:
            _, proto = await loop.create_connection(lambda: _Protocol(self), u.hostname or
                                                    "127.0.0.1", u.port or 4222)
        except OSError as exc:
            raise Unavailable(f"cannot connect to {self.url}: {exc}") from exc
        self._proto = proto
        creds = self.endpoint.credentials
        auth: dict[str, Any] = {}
        if creds is not None:
            try:
                info = await asyncio.wait_for(asyncio.shield(self._info), 5.0)
            except TimeoutError:
                raise Unavailable(f"no INFO from {self.url} in 5 s") from None
            auth = {"jwt": creds.jwt, "sig": creds.sign_nonce(str(info.get("nonce", "")))}
        opts: dict[str, Any] = {**auth, "verbose": False, "pedantic": False, "headers": True,
                                "no_responders": True, "protocol": 1, "lang": "python-feed",
                                "version": "1", "name": "threadlog-projector-feed"}
        if u.username and u.password is not None:
            opts.update(user=unquote(u.username), **{"pass": unquote(u.password)})
        elif u.username:
            opts["auth_token"] = unquote(u.username)
        self._write(b"CONNECT " + json.dumps(opts).encode() + _CRLF)
        self._last_seq = max(0, from_seq - 1)
        await self._subscribe_and_create()

    async def close(self) -> None:
        self._closed = True
        await self._delete_consumer()
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()

    async def __aenter__(self) -> OrderedFeed:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def buffered(self) -> int:
        """Events received and not yet taken."""
        return len(self._items)

    # ----------------------------------------------------------------- consuming
    async def take(self, max_items: int, timeout: float | None = None) -> list[Item]:
        """Wait (up to ``timeout``, None: forever) for events; return up to ``max_items``.

        Returns an empty list on timeout. Raises :class:`Unavailable` if the connection
        is lost.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._items:
            if self._error is not None:
                raise Unavailable(f"projector feed lost its connection: {self._error!r}")
            if self._needs_reset:
                await self._reset()
                continue
            self._ready.clear()
            wait = 3 * self.heartbeat_s
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return []
            try:
                await asyncio.wait_for(self._ready.wait(), wait)
            except TimeoutError:
                if time.monotonic() - self._last_activity > 3 * self.heartbeat_s:
                    self._needs_reset = True
        items = self._items
        n = min(max_items, len(items))
        out = [items.popleft() for _ in range(n)]
        self._taken += n
        self._last_seq = out[-1][0]
        self._answer_flow_control()
        if self._paused and len(items) < self.high_water // 2 and self._proto is not None:
            self._paused = False
            assert self._proto.transport is not None
            self._proto.transport.resume_reading()
        return out

    # ----------------------------------------------------------------- protocol events
    def _on_msg(self, sid: int, subject: bytes, reply: bytes, payload: bytes) -> None:
        if sid != self._sid or self._needs_reset:
            return
        tokens = reply.split(b".")
        off = 0 if len(tokens) == 9 else 2
        dseq = int(tokens[6 + off])
        if dseq != self._dseq + 1:
            self._needs_reset = True
            self._ready.set()
            return
        self._dseq = dseq
        self._received += 1
        self._last_reply = tokens[8 + off]
        self._items.append((int(tokens[5 + off]), subject, payload))

    def _received_some(self) -> None:
        """After the messages of one read: pending count, liveness, backpressure, wake."""
        self.pending = int(self._last_reply)
        self._last_activity = time.monotonic()
        if len(self._items) > self.high_water and not self._paused and self._proto:
            assert self._proto.transport is not None
            self._paused = True
            self._proto.transport.pause_reading()
        self._ready.set()

    def _on_status(self, sid: int, header: bytes, reply: bytes) -> None:
        if sid != self._sid:
            return
        self._last_activity = time.monotonic()
        code = header[9:12]
        if code != b"100":  # 409 consumer deleted, etc.: start over from where we are
            self._needs_reset = True
            self._ready.set()
            return
        if reply:  # flow control request (see _answer_flow_control)
            self._fc.append((self._received, reply))
            self._answer_flow_control()
            return
        fields = _headers(header)
        stalled = fields.get("nats-consumer-stalled")
        if stalled:
            self._write(b"PUB " + stalled.encode() + b" 0\r\n\r\n")
        last = fields.get("nats-last-consumer")
        if last is not None and int(last) != self._dseq:
            self._needs_reset = True
            self._ready.set()

    def _on_control(self, line: bytes) -> None:
        if line == b"PING":
            self._write(b"PONG\r\n")
        elif line == b"PONG":
            if self._pong is not None and not self._pong.done():
                self._pong.set_result(None)
        elif line.startswith(b"INFO "):
            info = json.loads(line[5:])
            if self._info is not None and not self._info.done():
                self._info.set_result(info)
            if info.get("tls_required"):
                self._lost(Unavailable("server requires TLS, which the projector feed lacks"))
        elif line.startswith(b"-ERR"):
            self._lost(Unavailable(f"server error: {line.decode(errors='replace')}"))

    def _lost(self, exc: BaseException | None) -> None:
        if self._error is None:
            self._error = exc or Unavailable("connection closed")
        if self._pong is not None and not self._pong.done():
            self._pong.set_exception(Unavailable(f"projector feed: {self._error!r}"))
        self._ready.set()

    # ----------------------------------------------------------------- internals
    def _write(self, data: bytes) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.write(data)

    def _answer_flow_control(self) -> None:
        # Answer once fewer than ``high_water`` events received before the request are
        # still waiting to be taken: the server keeps at most about that many in flight.
        while self._fc and self._fc[0][0] - self._taken < self.high_water:
            _, reply = self._fc.popleft()
            self._write(b"PUB " + reply + b" 0\r\n\r\n")

    async def _ping(self) -> None:
        self._pong = asyncio.get_running_loop().create_future()
        self._write(b"PING\r\n")
        await asyncio.wait_for(self._pong, 10)

    async def _subscribe_and_create(self) -> None:
        old = self._sid
        self._sid += 1
        inbox = f"_FEED.{new_id()}"
        self._dseq = 0
        self._fc.clear()
        self._received = self._taken = 0
        self._items.clear()
        self._needs_reset = False
        self._write(f"SUB {inbox} {self._sid}\r\n".encode())
        if old:
            self._write(f"UNSUB {old}\r\n".encode())
        await self._ping()  # the SUB is registered before the consumer starts delivering
        config = ConsumerConfig(
            deliver_subject=inbox, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self._last_seq + 1, ack_policy=AckPolicy.NONE, max_deliver=1,
            flow_control=True, idle_heartbeat=self.heartbeat_s, mem_storage=True,
            num_replicas=1, inactive_threshold=max(10.0, 5 * self.heartbeat_s),
            filter_subject=self.subject,
        )
        info = await self.nc.jsm().add_consumer(self.stream, config=config)
        self._consumer = info.name
        self._last_activity = time.monotonic()

    async def _delete_consumer(self) -> None:
        name, self._consumer = self._consumer, None
        if name and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.jsm().delete_consumer(self.stream, name)

    async def _reset(self) -> None:
        """Recreate the consumer from the last handed-out sequence + 1."""
        self.resets += 1
        await self._delete_consumer()
        if self._error is not None:
            raise Unavailable(f"projector feed lost its connection: {self._error!r}")
        if self.before_reset is not None:
            await self.before_reset()
        await self._subscribe_and_create()


def _headers(block: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in block.decode(errors="replace").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out
