"""Rate-limit state shared by every handler process: one NATS KV bucket.

Bucket ``<EVENTS stream>_rate_limits`` (history 1), two keys per user:

- ``state.<user_id>``: the user's buckets, ``{"m": [level, at, capacity], "t": [...]}``
  (``handlers.rate_limits.bucket``). Every change is a compare-and-set on the key's
  revision (``kv.update(last=)``, ``kv.create`` for a new key): two processes charging
  the same user at once never both read the same level and write over each other; the
  loser reads again and decides again (at most ``MAX_ATTEMPTS`` times, then
  ``unavailable``).
- ``limit.<user_id>``: an operator's override (``ops.rate_limits.set``). Every process
  follows these keys (a KV watch) and keeps them in memory; until the watch has caught
  up, the key is read per check.

Why KV and not the log: the levels change on every generation and need an atomic
read-modify-write across processes; the log would need a fold per user per process and
an append per charge. Overrides sit beside the levels so a deployment keeps its rate
limits in one place; they are operational settings, not facts the read model or the
invoices need (an override's history is not kept: ``history=1``).

Failure modes: NATS errors propagate (the generation is refused with ``unavailable``:
nothing has been appended or called yet). A malformed stored value is treated as absent
(a full bucket, no override) and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from events.errors import Unavailable
from events.kv_snapshot import kv_snapshot
from events.tasks import cancel_and_wait
from handlers.rate_limits.limits import Override

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_ATTEMPTS = 50
"""Compare-and-set attempts per change before giving up (contention of one user's key)."""

State = dict[str, Any]
Decide = Callable[[State], tuple[State | None, T]]
"""Given the stored state (``{}`` when none), the state to write (None: write nothing)
and the result to return."""


class RateLimitStore:
    def __init__(self, kv: KeyValue, bucket: str, js: JetStreamContext) -> None:
        self.kv = kv
        self.bucket = bucket
        self.js = js
        self.overrides: dict[str, Override] = {}
        """Followed ``limit.*`` keys, by user (complete once :attr:`ready` is set)."""
        self._revisions: dict[str, int] = {}
        """The revision of each user's override (or deletion) the watcher applied."""
        self.ready = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiting: dict[str, int] = {}

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, replicas: int = 1
                   ) -> RateLimitStore:
        try:
            kv = await js.key_value(bucket)
        except BucketNotFoundError:
            kv = await js.create_key_value(KeyValueConfig(
                bucket=bucket, storage=StorageType.FILE, replicas=replicas, history=1))
        return cls(kv, bucket, js)

    # -- levels -------------------------------------------------------------------
    async def change(self, user_id: str, decide: Decide[T]) -> T:
        """Read ``state.<user_id>``, apply ``decide`` and write the result if the key
        did not change meanwhile; otherwise read and decide again. One change per user
        at a time in this process (so only other processes can make it retry)."""
        key = f"state.{user_id}"
        self._waiting[user_id] = self._waiting.get(user_id, 0) + 1
        lock = self._locks.setdefault(user_id, asyncio.Lock())
        try:
            async with lock:
                return await self._change(key, user_id, decide)
        finally:
            self._waiting[user_id] -= 1
            if not self._waiting[user_id]:
                del self._waiting[user_id], self._locks[user_id]

    async def _change(self, key: str, user_id: str, decide: Decide[T]) -> T:
        for _ in range(MAX_ATTEMPTS):
            state, revision = await self._read(key)
            new, result = decide(state)
            if new is None:
                return result
            data = json.dumps(new, separators=(",", ":")).encode()
            try:
                if revision is None:
                    await self.kv.create(key, data)
                else:
                    await self.kv.update(key, data, last=revision)
            except KeyWrongLastSequenceError:
                continue  # another process charged this user meanwhile: decide again
            return result
        raise Unavailable(f"rate limits of {user_id!r}: too much contention on the bucket",
                          details={"user_id": user_id, "attempts": MAX_ATTEMPTS})

    async def state(self, user_id: str) -> State:
        return (await self._read(f"state.{user_id}"))[0]

    async def _read(self, key: str) -> tuple[State, int | None]:
        try:
            entry = await self.kv.get(key)
        except NotFoundError:  # absent or deleted: kv.create writes it
            return {}, None
        try:
            value = json.loads(entry.value or b"{}")
        except ValueError:
            value = None
        if not isinstance(value, dict):
            log.warning("rate limits: ignoring a malformed value at %s", key)
            value = {}
        return value, entry.revision

    # -- overrides ----------------------------------------------------------------
    async def override(self, user_id: str) -> Override | None:
        """The user's override: from the watch once it has caught up, else read."""
        if self.ready.is_set():
            return self.overrides.get(user_id)
        value, _ = await self._read(f"limit.{user_id}")
        return Override.from_dict(value) if value else None

    async def set_override(self, user_id: str, override: Override | None) -> None:
        """Write (or with None delete) the override; this process uses it at once."""
        key = f"limit.{user_id}"
        if override is None:
            await self.kv.delete(key)
            self.overrides.pop(user_id, None)
        else:
            await self.kv.put(key, json.dumps(override.to_dict()).encode())
            self.overrides[user_id] = override

    async def watch_overrides(self, timeout: float = 5.0) -> None:
        """Follow ``limit.*`` in the background; returns once the stored ones are in
        (or after ``timeout``: checks read the key until then).

        The stored ones are read from the bucket's stream after the watcher started
        (:func:`events.kv_snapshot.kv_snapshot`), not taken from the watcher's "initial
        values are in" marker, which can come before a delivered value is processed:
        an override would then be missed and the defaults applied to that user."""
        watcher = await self.kv.watch("limit.>")

        async def follow() -> None:
            try:
                while True:
                    try:
                        entry = await watcher.updates(timeout=3600)  # type: ignore[no-untyped-call]
                    except Exception as exc:  # a timeout with no change, or a reconnect
                        if "timeout" not in type(exc).__name__.lower():
                            log.warning("rate limits: override watch: %s", exc)
                            await asyncio.sleep(1)  # back off, not a wait for state
                        continue
                    if entry is None:  # the (unreliable) end-of-initial-values marker
                        continue
                    user = entry.key.partition(".")[2]
                    self._revisions[user] = max(self._revisions.get(user, 0),
                                                entry.revision or 0)
                    if entry.operation in (KV_DEL, KV_PURGE):
                        self.overrides.pop(user, None)
                        continue
                    try:
                        found = Override.from_dict(json.loads(entry.value or b"null"))
                    except ValueError:
                        found = None
                    if found is None:
                        log.warning("rate limits: ignoring a malformed override for %s", user)
                        self.overrides.pop(user, None)
                    else:
                        self.overrides[user] = found
            finally:
                with contextlib.suppress(Exception):
                    await watcher.stop()  # type: ignore[no-untyped-call]

        self._watch = asyncio.create_task(follow())

        async def load() -> None:
            for key, stored in (await kv_snapshot(self.js, self.bucket, "limit.>")).items():
                user = key.partition(".")[2]
                if stored.revision <= self._revisions.get(user, 0):
                    continue  # the watcher applied this value or a newer change
                try:
                    found = Override.from_dict(json.loads(stored.value))
                except ValueError:
                    found = None
                if found is not None:
                    self.overrides[user] = found
            self.ready.set()

        try:
            await asyncio.wait_for(load(), timeout)
        except TimeoutError:
            log.warning("rate limits: overrides not loaded in %.0f s; checks read them", timeout)
        except BaseException:
            await self.close()  # the follower does not outlive a failed start
            raise

    async def close(self) -> None:
        """Stop following overrides. The follower is cancelled until it ends: on Python
        3.11 ``asyncio.wait_for`` (inside nats-py's ``watcher.updates``) drops a
        cancellation that arrives as its wait completes, and one cancel then left the
        follower waiting for the next change (an hour) and this close with it."""
        task, self._watch = self._watch, None
        self.ready.clear()
        if task is not None:
            await cancel_and_wait([task])
