"""Real deletion of a thread, or of all a user's threads, down to the bytes on disk.

Deleting a thread appends ``thread_deleted``, then *erases* (not purges: a purge leaves
the bytes in the server's block files; see ``docs/erasure-nats.md``):

1. the messages of the thread's generations still in the generations work queue (they
   hold the prompt: ``handlers.agents.durable.erase_queued``) and the stored
   command-log replies of the commands that produced the thread's events (they may hold
   generated text), found from the events' ``Nats-Msg-Id`` / causation / correlation
   ids (:meth:`CommandLog.erase_replies`);
2. every event of the thread except the content-free tombstone, ``thread_created`` last
   (it is how a user's threads are found again if the erasure is interrupted);
3. the thread's canvases likewise (``CanvasService.purge_thread``);
4. the streamed deltas (memory storage: a purge frees them, nothing is on disk).

Each step is idempotent and ordered so that a crash leaves what the next run needs to
find the rest. The projector removes the thread's rows when it applies the tombstone (a
rebuild never sees the content at all). Usage records live on ``usage.<user_id>`` and
stay (they hold no content). The delete command's own reply (``{thread_id, deleted}``)
holds no content and is recorded after the erasure.

Synchronous (``wait: true``, the default): the reply comes after the erasure. If the
process dies between the tombstone and the end of the erasure, re-sending the command
(same id, or any delete of that thread) runs it again.

Asynchronous (``wait: false``): the command is validated, a pending-purge record is
written (``handlers.threads.pending_purges``), the tombstone appended, and the reply sent at
once; the erasure runs in the background and removes the record when done (so
``cmd.deletion.pending`` reporting done means the bytes are gone). The thread is
gone for every command from the tombstone on (and for queries once it is projected). A
crash before the erasure finishes leaves the record, which the next handler start resumes.
A record whose thread has no tombstone (the process died before appending it) is dropped
at resume without erasing anything. A user's asynchronous deletion writes one record for
the user and deletes the threads one by one (tombstone, erasure) in the background.

Not covered (see the doc): a reply written by another process after the erasure of the
command log (a generation on the thread still finishing elsewhere); content a server
purge already left in block files before this erasure existed.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from nats.js.errors import NotFoundError

from events import Aggregate, ThreadlogError, Unavailable
from events.replies import Reply
from events.store import EventRef
from handlers.agents.durable import erase_queued
from handlers.runner import CommandRunner
from handlers.streaming import thread_deltas_filter
from handlers.threads import decisions as thread_decisions
from handlers.threads.commands import DeleteThread, DeleteUserData, PendingDeletions
from handlers.threads.pending_purges import PendingPurges, Record, thread_key, user_key
from handlers.threads.state import ThreadState
from handlers.threads.user_threads import UserThreads

MAX_WAITS_PER_USER = 4
"""Requests of one user that may wait in ``cmd.<u>.deletion.pending`` at once."""


class ThreadDeleter:
    def __init__(self, runner: CommandRunner, canvas: Any = None,
                 deltas_stream: str = "DELTAS", purges: PendingPurges | None = None) -> None:
        self.runner = runner
        self.store = runner.store
        self.canvas = canvas
        self.deltas_stream = deltas_stream
        self.user_threads = UserThreads(runner.store)
        self.purges = purges
        self._waiting: Counter[str] = Counter()
        """Records of asynchronous deletions; without it ``wait: false`` is unavailable."""

    async def _purge(self, thread_id: str) -> None:
        """Erase the thread's content (see the module docstring); idempotent. Raises
        ``Unavailable`` / ``ThreadlogError`` (``erase_failed``) when the server does not
        answer or refuses: nothing is lost by running it again."""
        log = self.runner.command_log

        async def erase_replies(refs: list[EventRef]) -> None:
            await erase_queued(self.store, set().union(*(r.command_ids for r in refs)))
            if log is not None:
                await log.erase_replies(self.store, refs)

        await self.store.erase(Aggregate.thread(thread_id), keep_types={"thread_deleted"},
                               last_types={"thread_created"}, before=erase_replies)
        if self.canvas is not None:
            await self.canvas.purge_thread(thread_id)
        with contextlib.suppress(NotFoundError):
            await self.store.js.purge_stream(self.deltas_stream,
                                             subject=thread_deltas_filter(thread_id))

    def _with_purge(self, d: thread_decisions.Decision, thread_id: str
                    ) -> thread_decisions.Decision:
        async def purge() -> None:
            await self._purge(thread_id)

        d.after = purge
        return d

    def _pending(self) -> PendingPurges:
        if self.purges is None:
            raise Unavailable("asynchronous deletion is not configured on this handler")
        return self.purges

    async def delete_thread(self, cmd: DeleteThread) -> Reply:
        if not cmd.wait:
            return await self._delete_thread_async(cmd)

        def decide(state: ThreadState, c: DeleteThread) -> thread_decisions.Decision:
            return self._with_purge(thread_decisions.delete_thread(state, c), c.thread_id)

        def replay(state: ThreadState, c: DeleteThread) -> thread_decisions.Decision:
            return self._with_purge(thread_decisions.replay_delete(state, c), c.thread_id)

        return await self.runner.run(cmd, cmd.thread_id, decide, replay)

    async def _delete_thread_async(self, cmd: DeleteThread) -> Reply:
        """Validate, record the owed purge, append the tombstone, reply; purge later."""
        purges = self._pending()
        tid = cmd.thread_id
        async with self.runner.states.lock(tid):
            state = await self.runner.states.refresh(tid)
            if cmd.command_id not in state.commands:
                thread_decisions.delete_thread(state, cmd)  # refuses before any record
        key = thread_key(cmd.user_id, tid)
        await purges.add(key, {"kind": "thread", "user_id": cmd.user_id, "thread_id": tid,
                               "command_id": cmd.command_id})
        reply = await self.runner.run(cmd, tid, thread_decisions.delete_thread,
                                      thread_decisions.replay_delete)
        purges.run(key, lambda: self._purge(tid))
        return Reply.success({**reply.result, "purge_pending": True}, reply.seq)

    async def delete_user_data(self, cmd: DeleteUserData) -> Reply:
        """Delete every thread ``cmd.user_id`` created; one sub-command per thread, so a
        re-sent command resumes where a failed one stopped. With ``wait: false`` the
        threads are deleted in the background (a pending record makes it resumable)."""
        if cmd.wait:
            deleted, seq = await self._delete_threads(cmd)
            return Reply.success({"user_id": cmd.user_id, "threads_deleted": deleted}, seq)
        purges = self._pending()
        threads = await self.user_threads.threads_of(cmd.user_id)
        key = user_key(cmd.user_id, cmd.command_id)
        await purges.add(key, {"kind": "user", "user_id": cmd.user_id,
                               "command_id": cmd.command_id})
        purges.run(key, lambda: self._delete_threads_quietly(cmd))
        return Reply.success({"user_id": cmd.user_id, "threads_deleted": threads,
                              "purge_pending": True}, None)

    async def _delete_threads(self, cmd: DeleteUserData) -> tuple[list[str], int]:
        deleted: list[str] = []
        seq = 0
        for tid in await self.user_threads.threads_of(cmd.user_id):
            sub = DeleteThread(command_id=f"{cmd.command_id}-{tid}"[:128].replace(".", "_"),
                               user_id=cmd.user_id, thread_id=tid,
                               correlation_id=cmd.command_id)
            reply = await self.delete_thread(sub)
            seq = max(seq, reply.seq or 0)
            deleted.append(tid)
        return deleted, seq

    async def _delete_threads_quietly(self, cmd: DeleteUserData) -> None:
        await self._delete_threads(cmd)

    # -- asynchronous deletions: resume and progress -------------------------------------
    def resume_purge(self, key: str, record: Record) -> Callable[[], Awaitable[None]]:
        """The background work of a pending record found at start."""
        if record.get("kind") == "user":
            cmd = DeleteUserData(command_id=record["command_id"], user_id=record["user_id"])
            return lambda: self._delete_threads_quietly(cmd)
        tid = str(record.get("thread_id"))

        async def purge_if_deleted() -> None:
            async with self.runner.states.lock(tid):
                state = await self.runner.states.refresh(tid)
            if state.deleted:  # no tombstone: the command died before it; nothing owed
                await self._purge(tid)

        return purge_if_deleted

    async def resume(self) -> int:
        """Resume the purges of every pending record (at handler start)."""
        return 0 if self.purges is None else await self.purges.resume(self.resume_purge)

    async def pending(self, cmd: PendingDeletions) -> Reply:
        """The caller's pending purges (of ``thread_id`` only, if given), after waiting up
        to ``wait_s`` for them to finish. At most :data:`MAX_WAITS_PER_USER` of one
        user's requests wait at once (``rate_limited`` beyond): one user must not hold
        every request slot of the subject."""
        keys = (thread_key(cmd.user_id, cmd.thread_id) if cmd.thread_id
                else f"{cmd.user_id}.>")
        if cmd.wait_s and self._waiting[cmd.user_id] >= MAX_WAITS_PER_USER:
            raise ThreadlogError(
                f"{MAX_WAITS_PER_USER} requests of this user already wait; retry when they "
                "are answered", code="rate_limited",
                details={"limit": MAX_WAITS_PER_USER, "retry_after_s": 1.0})
        self._waiting[cmd.user_id] += 1
        try:
            left = await self._pending().wait(keys, cmd.wait_s)
        finally:
            self._waiting[cmd.user_id] -= 1
            if not self._waiting[cmd.user_id]:
                del self._waiting[cmd.user_id]
        items = [{k: r[k] for k in ("kind", "thread_id", "command_id", "requested_at")
                  if k in r} for r in left.values()]
        return Reply.success({"user_id": cmd.user_id, "pending": items, "done": not items})
