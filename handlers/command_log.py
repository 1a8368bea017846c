"""Replies of processed commands, kept in a JetStream KV bucket for the duplicate window.

Re-sending a command id returns the stored reply and appends nothing. If the process
dies after appending but before storing the reply, the re-sent command is decided again;
its events carry the same ``Nats-Msg-Id``\\s and the same derived ids, so the store
reports a duplicate and the reply is rebuilt identically.

Reusing a command id with a different body is an error (``command_id_reused``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from events import ThreadlogError
from events.replies import Reply
from handlers.commands import Command

log = logging.getLogger(__name__)


def command_hash(cmd: Command) -> str:
    return hashlib.sha256(cmd.model_dump_json().encode()).hexdigest()[:32]


class CommandLog:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self._writes: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, ttl_s: float,
                   replicas: int = 1) -> CommandLog:
        try:
            kv = await js.key_value(bucket)
        except BucketNotFoundError:
            kv = await js.create_key_value(KeyValueConfig(
                bucket=bucket, ttl=ttl_s, storage=StorageType.FILE, replicas=replicas,
                history=1))
        return cls(kv)

    @staticmethod
    def key(cmd: Command) -> str:
        return f"{cmd.user_id}.{cmd.command_id}"

    async def lookup(self, cmd: Command) -> Reply | None:
        """The stored reply of this command, or None. Raises on id reuse with another body."""
        try:
            entry = await self.kv.get(self.key(cmd))
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        stored: dict[str, Any] = json.loads(entry.value)
        if stored.get("hash") != command_hash(cmd):
            raise ThreadlogError(
                f"command id {cmd.command_id!r} was already used for a different command",
                code="command_id_reused", details={"command_id": cmd.command_id})
        return Reply.model_validate(stored["reply"])

    def record_soon(self, cmd: Command, reply: Reply) -> None:
        """Record in the background (the reply need not wait for it). If the write is lost,
        a re-sent command is decided again and answered from its idempotent events."""
        task = asyncio.ensure_future(self._record_logged(cmd, reply))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _record_logged(self, cmd: Command, reply: Reply) -> None:
        try:
            await self.record(cmd, reply)
        except Exception:
            log.warning("could not record the reply of command %s", cmd.command_id,
                        exc_info=True)

    async def drain(self) -> None:
        """Wait for background writes (call before closing the connection)."""
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    async def record(self, cmd: Command, reply: Reply) -> None:
        value = {"hash": command_hash(cmd), "reply": reply.model_dump(mode="json")}
        await self.kv.put(self.key(cmd), json.dumps(value).encode())


async def answer_once(log: CommandLog | None, cmd: Command,
                      produce: Callable[[], Awaitable[Reply]], *,
                      record_in_background: bool = False) -> Reply:
    """The stored reply of a re-sent ``cmd``, else ``produce()``'s reply, recorded
    (awaited, or in the background after the reply with ``record_in_background``)."""
    if log is not None:
        stored = await log.lookup(cmd)
        if stored is not None:
            return stored
    reply = await produce()
    if log is not None:
        if record_in_background:
            log.record_soon(cmd, reply)
        else:
            await log.record(cmd, reply)
    return reply
