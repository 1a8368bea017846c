"""Purges still owed by asynchronous deletions, kept in a JetStream KV bucket.

An asynchronous delete (``cmd.thread.delete`` / ``cmd.user.delete`` with ``wait: false``)
writes a record here *before* it replies, runs the purge in the background and removes
the record once the purge is done. When the handlers start they scan the bucket and run
every record they find: a process that died between the reply and the end of its purge
leaves its record, and the next start finishes the work. Purges are idempotent, so two
processes resuming the same record (or a record resumed while its first owner still
runs it) only repeat work.

"Purge" here is the deleter's erasure (``ThreadDeleter._purge``: the bytes are
overwritten on the server's disk, see ``docs/erasure-nats.md``), so a record is removed
only once the deleted content is in no file of the server. Records hold ids only (no
content), so leaving their bytes behind a KV delete is harmless.

Keys: ``<user_id>.t.<thread_id>`` (one thread) and ``<user_id>.u.<command_id>`` (all of a
user's threads); ids are safe subject tokens, so a user's records are ``<user_id>.>``.
The bucket is file-backed, history 1, no TTL: a record stays until its purge is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from events.kv_snapshot import kv_snapshot

log = logging.getLogger(__name__)
Record = dict[str, Any]
RETRY_PAUSES = (0.1, 0.5, 2.0)
"""Pauses between attempts of a failing purge; after the last the record stays for the
next start."""


def thread_key(user_id: str, thread_id: str) -> str:
    return f"{user_id}.t.{thread_id}"


def user_key(user_id: str, command_id: str) -> str:
    return f"{user_id}.u.{command_id}"


class PendingPurges:
    def __init__(self, kv: KeyValue, js: JetStreamContext, bucket: str, *,
                 timeout: float = 5.0) -> None:
        self.kv = kv
        self.timeout = timeout
        self._js = js
        self._bucket = bucket
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, replicas: int = 1
                   ) -> PendingPurges:
        try:
            kv = await js.key_value(bucket)
        except BucketNotFoundError:
            kv = await js.create_key_value(KeyValueConfig(
                bucket=bucket, storage=StorageType.FILE, replicas=replicas, history=1))
        return cls(kv, js, bucket)

    async def add(self, key: str, record: Record) -> None:
        """Write the record (before replying to the command that owes the purge)."""
        await self.kv.put(key, json.dumps({**record, "requested_at": time.time()}).encode())

    def run(self, key: str, purge: Callable[[], Awaitable[None]]) -> None:
        """Run ``purge`` in the background, then remove the record of ``key``. A key
        already running in this process is not started twice."""
        running = self._tasks.get(key)
        if running is not None and not running.done():
            return
        task = asyncio.ensure_future(self._run(key, purge))
        self._tasks[key] = task
        task.add_done_callback(lambda t: self._tasks.pop(key, None) if
                               self._tasks.get(key) is t else None)

    async def _run(self, key: str, purge: Callable[[], Awaitable[None]]) -> None:
        for pause in (*RETRY_PAUSES, None):
            try:
                await purge()
                await self.kv.delete(key)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                if pause is None:
                    log.exception("purge %s failed; its record stays for the next start", key)
                    return
                log.warning("purge %s failed; retrying in %ss", key, pause, exc_info=True)
                await asyncio.sleep(pause)

    async def records(self, keys: str = ">") -> dict[str, Record]:
        """The pending records whose keys match ``keys`` (a subject filter)."""
        return await self.wait(keys, 0.0)

    async def wait(self, keys: str, timeout: float) -> dict[str, Record]:
        """Wait up to ``timeout`` seconds for no record matching ``keys`` to be left;
        returns those still pending (empty: every matching purge is done).

        What is pending now is read directly from the bucket's stream (:meth:`_current`),
        not taken from the watcher's "initial values are in" marker: nats-py puts that
        marker when the consumer reports nothing undelivered and the client has
        processed nothing yet, which under load happens while a record is delivered but
        not yet processed (a pending purge answered as done). The watcher, started
        first, only brings the changes after that read."""
        if timeout <= 0:
            return await self._current(keys)
        watcher = await self.kv.watch(keys)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            pending = await self._current(keys)
            while pending:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    entry = await watcher.updates(timeout=left)  # type: ignore[no-untyped-call]
                except nats.errors.TimeoutError:
                    break
                if entry is None:  # the (unreliable) end-of-initial-values marker
                    continue
                if entry.operation in (KV_DEL, KV_PURGE):
                    pending.pop(entry.key, None)
                elif entry.value:
                    pending[entry.key] = json.loads(entry.value)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        return pending

    async def _current(self, keys: str) -> dict[str, Record]:
        """The records matching ``keys`` now, read from the bucket's stream
        (:func:`events.kv_snapshot.kv_snapshot`)."""
        found = await kv_snapshot(self._js, self._bucket, keys)
        return {key: json.loads(stored.value) for key, stored in found.items()}

    async def resume(self, purge_of: Callable[[str, Record], Callable[[], Awaitable[None]]]
                     ) -> int:
        """Start the purge of every pending record (at handler start). Returns how many."""
        found = await self.records()
        for key, record in found.items():
            self.run(key, purge_of(key, record))
        if found:
            log.info("resuming %d pending purge(s)", len(found))
        return len(found)

    async def close(self, grace: float = 5.0) -> None:
        """Let running purges finish for up to ``grace`` seconds, then cancel the rest
        (their records stay for the next start)."""
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=grace)
        for t in late:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
