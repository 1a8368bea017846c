"""Replies of processed commands, kept in a JetStream KV bucket for the duplicate window.

Re-sending a command id returns the stored reply and appends nothing. If the process
dies after appending but before storing the reply, the re-sent command is decided again;
its events carry the same ``Nats-Msg-Id``\\s and the same derived ids, so the store
reports a duplicate and the reply is rebuilt identically.

Reusing a command id with a different body is an error (``command_id_reused``).

Erasure: replies may hold content (generated text, canvas text), so deleting a thread
erases the replies of the commands that produced its events (:meth:`CommandLog.erase_replies`,
by stream sequence, with erase). A KV delete or purge would leave the bytes in the block
files, and nats-py creates KV buckets with ``deny_delete`` (no message delete, and a
stream update cannot lift it), so :meth:`CommandLog.open` creates the bucket's backing
stream ``KV_<bucket>`` itself, KV-compatible but deletable, and recreates a bucket found
with ``deny_delete`` (its entries are only a cache: a re-sent command is answered from
its idempotent events). A reply is written once (``create``): an overwrite would make
the server drop the old revision without erasing it.

A stored ``ok`` reply is only returned while its events are in the stream: an OS crash
before the server's fsync can lose the stream's tail while the bucket keeps the reply
(or the reverse), and re-sending such a command must not answer ``ok`` with nothing
behind it. So :meth:`CommandLog.lookup` reads the event at the reply's ``seq`` (one
message get, for re-sent commands only): it must exist and either carry this command's
``Nats-Msg-Id`` (:func:`events.store.command_id_of`) or - a command that appended nothing
answers with the aggregate's position, another command's event - have been stored
before the reply was recorded (an event stored after it reuses a lost sequence). If not,
the stale reply is deleted (logged) and the command is decided again. An event missing
below the stream's last sequence was deleted (a thread's erasure), not lost: the command
was done, its reply stands (deciding it again could write the deleted data back). The
events stream
is the bucket's name without ``_commands`` (``<stream>_commands``, as the runtime names
it) unless given; with no such stream the check is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RawStreamMsg, StorageType, StreamConfig
from nats.js.errors import KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from events import EventStore, ThreadlogError
from events.replies import Reply
from events.store import EventRef, command_id_of
from handlers.commands import Command

log = logging.getLogger(__name__)
_KEY_TOKEN = re.compile(r"^[A-Za-z0-9_\-=]+$")
"""A key part we may look up (no subject syntax: ``.``, ``*``, ``>``, spaces)."""
_STREAM_NOT_FOUND = 10059
_KV_OPERATION = "KV-Operation"
_MSG_ID = "Nats-Msg-Id"
_BUCKET_SUFFIX = "_commands"


def command_hash(cmd: Command) -> str:
    return hashlib.sha256(cmd.model_dump_json().encode()).hexdigest()[:32]


def bucket_stream_config(bucket: str, ttl_s: float, replicas: int = 1) -> StreamConfig:
    """The backing stream of the command-log bucket: what ``js.create_key_value`` makes
    (history 1, file storage, TTL) except that messages may be deleted (erased)."""
    return StreamConfig(
        name=f"KV_{bucket}", subjects=[f"$KV.{bucket}.>"], allow_rollup_hdrs=True,
        allow_msg_ttl=True, deny_delete=False, discard=DiscardPolicy.NEW,
        duplicate_window=min(ttl_s, 120.0) if ttl_s else 120.0, max_age=ttl_s,
        max_consumers=-1, max_msgs=-1, max_bytes=-1, max_msg_size=-1,
        max_msgs_per_subject=1, num_replicas=replicas, storage=StorageType.FILE)


class CommandLog:
    def __init__(self, kv: KeyValue, bucket: str | None = None, *,
                 events_stream: str | None = None) -> None:
        self.kv = kv
        self.bucket: str = bucket or kv._name
        self.events_stream = events_stream
        """The stream a stored reply's ``seq`` refers to (checked by :meth:`lookup`);
        None: not checked."""
        self._js: JetStreamContext = kv._js
        self._writes: set[asyncio.Task[None]] = set()
        self.stale_dropped = 0
        """Stored replies found without their events and dropped (see the module
        docstring)."""

    @property
    def stream(self) -> str:
        """The bucket's backing stream."""
        return f"KV_{self.bucket}"

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, ttl_s: float,
                   replicas: int = 1, *, events_stream: str | None = None) -> CommandLog:
        """Open the bucket, creating its backing stream (deletable) if missing. A bucket
        found with ``deny_delete`` (created by ``js.create_key_value``) cannot be erased:
        it is deleted (its files go with it) and recreated; its replies are lost, which
        only makes re-sent commands be answered from their events. ``events_stream``
        (default: ``bucket`` without its ``_commands`` suffix) is where a stored reply's
        events must be for it to be returned."""
        if events_stream is None and bucket.endswith(_BUCKET_SUFFIX):
            events_stream = bucket[:-len(_BUCKET_SUFFIX)] or None
        cfg = bucket_stream_config(bucket, ttl_s, replicas)
        assert cfg.name is not None
        try:
            info = await js.stream_info(cfg.name)
        except NotFoundError:
            info = None
        if info is not None and info.config.deny_delete:
            log.warning("command log %s denies message deletes (its replies could not be "
                        "erased): recreating it", bucket)
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(cfg.name)
            info = None
        if info is None:
            await js.add_stream(cfg)  # idempotent when another process created it alike
        return cls(await js.key_value(bucket), bucket, events_stream=events_stream)

    @staticmethod
    def key(cmd: Command) -> str:
        return f"{cmd.user_id}.{cmd.command_id}"

    async def lookup(self, cmd: Command) -> Reply | None:
        """The stored reply of this command, or None (none stored, or a stored ``ok``
        reply whose events are not in the stream: dropped, see the module docstring).
        Raises on id reuse with another body."""
        subject = f"$KV.{self.bucket}.{self.key(cmd)}"
        try:
            entry = await self._js.get_msg(self.stream, subject=subject,
                                           direct=bool(self.kv._direct))
        except NotFoundError:
            return None
        if entry.subject != subject or not entry.data or (
                (entry.headers or {}).get(_KV_OPERATION) in ("DEL", "PURGE")):
            return None
        stored: dict[str, Any] = json.loads(entry.data)
        if stored.get("hash") != command_hash(cmd):
            raise ThreadlogError(
                f"command id {cmd.command_id!r} was already used for a different command",
                code="command_id_reused", details={"command_id": cmd.command_id})
        reply = Reply.model_validate(stored["reply"])
        missing = await self._events_missing(cmd, reply, entry.time)
        if missing is None:
            return reply
        log.warning("command %s of user %s: its recorded reply is stale (%s); dropping it "
                    "and deciding the command again", cmd.command_id, cmd.user_id, missing)
        self.stale_dropped += 1
        if entry.seq is not None:
            with contextlib.suppress(NotFoundError):
                await self._js.delete_msg(self.stream, entry.seq)
        return None

    async def _events_missing(self, cmd: Command, reply: Reply,
                              recorded_at: datetime | None) -> str | None:
        """Why ``reply``'s events are not in the stream, or None when they are (or
        cannot be checked: no events stream, a failure reply, no ``seq``)."""
        stream, seq = self.events_stream, reply.seq
        if stream is None or not reply.ok or seq is None or seq <= 0:
            return None
        try:
            msg: RawStreamMsg = await self._js.get_msg(stream, seq)
        except NotFoundError as exc:
            if getattr(exc, "err_code", None) == _STREAM_NOT_FOUND:
                return None
            try:
                last = (await self._js.stream_info(stream)).state.last_seq
            except NotFoundError:
                return None
            if seq <= last:
                return None  # deleted (erased with its thread), not lost: it was done
            return f"stream {stream} has no event at sequence {seq} (its last is {last})"
        msg_id = (msg.headers or {}).get(_MSG_ID)
        if msg_id is not None and command_id_of(msg_id) == cmd.command_id:
            return None
        if recorded_at is None or msg.time is None or msg.time <= recorded_at:
            return None  # a reply that appended nothing names an earlier event
        return (f"the event at sequence {seq} of {stream} ({msg_id}) was stored after the "
                "reply: the sequence was reused after the stream lost its tail")

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
        """Store the reply once: a reply already stored for this key stays (it is the
        same reply: a command's result is rebuilt from its idempotent events), so no
        revision is ever replaced (a replaced revision is dropped without erase)."""
        value = {"hash": command_hash(cmd), "reply": reply.model_dump(mode="json")}
        with contextlib.suppress(KeyWrongLastSequenceError):
            await self.kv.create(self.key(cmd), json.dumps(value).encode())

    def keys_of(self, refs: Iterable[EventRef]) -> set[str]:
        """The keys of the replies that may hold content of these events: one per
        candidate command id of each event (``EventRef.command_ids``) and its user."""
        keys: set[str] = set()
        for r in refs:
            if r.user_id is None:
                continue
            for cid in r.command_ids:
                if _KEY_TOKEN.match(r.user_id) and _KEY_TOKEN.match(cid):
                    keys.add(f"{r.user_id}.{cid}")
        return keys

    async def erase_replies(self, store: EventStore, refs: Iterable[EventRef]) -> int:
        """Erase the stored replies of the commands that produced ``refs`` (by stream
        sequence in ``KV_<bucket>``, with erase: no bytes left). Waits for this
        process's background writes first, so a reply recorded just before is erased
        too. Returns how many replies were erased; idempotent.

        Not covered: a reply another process writes after this call (e.g. a generation
        on the thread still finishing elsewhere). Raises like
        :meth:`EventStore.erase_seqs`."""
        await self.drain()
        subjects = [f"$KV.{self.bucket}.{k}" for k in self.keys_of(refs)]
        found = await store.last_seqs(self.stream, subjects)
        return await store.erase_seqs(self.stream, found.values())


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
