"""Token deltas of a generation, on their own short-retention stream (not the event log).

Subject ``live.<user_id>.deltas.<thread_id>.<message_id>`` (captured by the DELTAS stream):
the user's own live subjects, which a user-role connection may subscribe to and no one
else's; only the service role publishes there. Each chunk is JSON
``{"message_id", "i", "start", "text", "done", "status"}``: ``i`` counts chunks from 0,
``start`` is the character offset of ``text`` in the message. The last chunk has
``done: true`` and the message's final status. A subscriber that joins late replays the
chunks from any ``i`` (cursor) and then follows live; after the stream's max age the
chunks are gone and the finished message (a durable event) is the record.

Chunking: text is flushed at a word or line boundary once ``min_chars`` have gathered or
``throttle_s`` has passed since the last flush, so a subscriber sees whole words at a
bounded rate.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS
from nats.js.api import ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from events import Timeout, check_token

LIVE_PREFIX = "live"
DELTAS_SUBJECTS = f"{LIVE_PREFIX}.*.deltas.>"
"""What the DELTAS stream captures."""


@dataclass(frozen=True)
class DeltaStreamSpec:
    name: str = "DELTAS"
    max_age_s: float = 600.0
    replicas: int = 1


async def ensure_delta_stream(nc: NATS, spec: DeltaStreamSpec) -> None:
    js = nc.jetstream()
    cfg = StreamConfig(name=spec.name, subjects=[DELTAS_SUBJECTS],
                       storage=StorageType.MEMORY, max_age=spec.max_age_s,
                       num_replicas=spec.replicas)
    try:
        info = await js.stream_info(spec.name)
    except NotFoundError:
        await js.add_stream(cfg)
        return
    if list(info.config.subjects or []) != [DELTAS_SUBJECTS]:
        info.config.subjects = [DELTAS_SUBJECTS]  # older layout: deltas.<thread>.<message>
        await js.update_stream(info.config)


def delta_subject(user_id: str, thread_id: str, message_id: str) -> str:
    """``live.<user>.deltas.<thread>.<message>`` (``message_id`` may be ``*`` to follow
    every message of the thread)."""
    check_token(user_id, what="user_id")
    check_token(thread_id, what="thread_id")
    if message_id != "*":
        check_token(message_id, what="message_id")
    return f"{LIVE_PREFIX}.{user_id}.deltas.{thread_id}.{message_id}"


def thread_deltas_filter(thread_id: str) -> str:
    """Every delta of a thread, whoever's (for purging it)."""
    check_token(thread_id, what="thread_id")
    return f"{LIVE_PREFIX}.*.deltas.{thread_id}.>"


class DeltaWriter:
    """Buffers streamed text and publishes chunks (fire-and-forget core publishes: the
    stream captures them in order; a lost chunk costs only live display, never the record).
    """

    def __init__(self, nc: NATS, user_id: str, thread_id: str, message_id: str, *,
                 min_chars: int = 24, throttle_s: float = 0.05,
                 generation_id: str | None = None) -> None:
        self.nc = nc
        self.generation_id = generation_id
        self.subject = delta_subject(user_id, thread_id, message_id)
        self.message_id = message_id
        self.min_chars = min_chars
        self.throttle_s = throttle_s
        self._buf = ""
        self._sent = 0
        self._i = 0
        self._last = time.monotonic()
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def write(self, text: str) -> None:
        self._buf += text
        due = len(self._buf) >= self.min_chars or (
            time.monotonic() - self._last >= self.throttle_s)
        if due:
            await self._flush_words()
        if self._buf and self._timer is None:
            # A model that pauses mid-answer must not hold back the words already said.
            self._timer = asyncio.ensure_future(self._flush_later())

    async def _flush_words(self) -> None:
        async with self._lock:  # the timer and a write may both flush
            cut = max(self._buf.rfind(" "), self._buf.rfind("\n"))
            if cut < 0:
                return
            head, self._buf = self._buf[:cut + 1], self._buf[cut + 1:]
            await self._publish(head, done=False)

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(self.throttle_s)
            await self._flush_words()
        finally:
            self._timer = None

    async def close(self, status: str = "success") -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        async with self._lock:
            await self._publish(self._buf, done=True, status=status)
        self._buf = ""
        await self.nc.flush()

    async def _publish(self, text: str, *, done: bool, status: str | None = None) -> None:
        body: dict[str, Any] = {"message_id": self.message_id, "i": self._i,
                                "start": self._sent, "text": text, "done": done,
                                "generation_id": self.generation_id}
        if status is not None:
            body["status"] = status
        await self.nc.publish(self.subject, json.dumps(body).encode())
        self._i += 1
        self._sent += len(text)
        self._last = time.monotonic()


async def read_deltas(nc: NATS, user_id: str, thread_id: str, message_id: str, *,
                      from_chunk: int = 0, stream: str = "DELTAS", idle_timeout: float = 30.0
                      ) -> AsyncIterator[dict[str, Any]]:
    """Chunks of one message from ``from_chunk`` on: catch up, then live, until ``done``
    (a JetStream consumer: service connections; the other roles follow the live subject
    ``live.<user>.deltas.<thread>.<message>``, as ``Client.stream_text`` does).

    Raises :class:`Timeout` if no chunk arrives for ``idle_timeout`` seconds.
    """
    js = nc.jetstream()
    sub = await js.subscribe(delta_subject(user_id, thread_id, message_id), stream=stream,
                             ordered_consumer=True, deliver_policy=DeliverPolicy.ALL,
                             config=ConsumerConfig())
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=idle_timeout)
            except nats.errors.TimeoutError:
                raise Timeout(f"no delta for message {message_id!r} in {idle_timeout}s",
                              details={"message_id": message_id}) from None
            chunk: dict[str, Any] = json.loads(msg.data)
            if chunk["i"] >= from_chunk:
                yield chunk
            if chunk.get("done"):
                return
    finally:
        await sub.unsubscribe()
