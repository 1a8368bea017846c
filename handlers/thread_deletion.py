"""Real deletion of a thread, or of all a user's threads.

Deleting a thread appends ``thread_deleted``, then purges the thread's subjects from the
log keeping only that content-free tombstone, purges its canvases and its streamed
deltas. The projector removes the thread's rows when it applies the tombstone (a rebuild
never sees the content at all). Usage records live on ``usage.<user_id>`` and stay.

Failure mode: if the process dies between the tombstone and the purges, re-sending the
command (same id, or any delete of that thread) runs the purges again: they are
idempotent.
"""

from __future__ import annotations

import contextlib
from typing import Any

from nats.js.errors import NotFoundError

from events import Aggregate
from events.replies import Reply
from handlers import thread_decisions
from handlers.commands import DeleteThread, DeleteUserData
from handlers.runner import CommandRunner
from handlers.thread_state import ThreadState
from handlers.user_threads import UserThreads


class ThreadDeleter:
    def __init__(self, runner: CommandRunner, canvas: Any = None,
                 deltas_stream: str = "DELTAS") -> None:
        self.runner = runner
        self.store = runner.store
        self.canvas = canvas
        self.deltas_stream = deltas_stream
        self.user_threads = UserThreads(runner.store)

    async def _purge(self, thread_id: str) -> None:
        await self.store.purge(Aggregate.thread(thread_id), keep_last=1)
        if self.canvas is not None:
            await self.canvas.purge_thread(thread_id)
        with contextlib.suppress(NotFoundError):
            await self.store.js.purge_stream(self.deltas_stream,
                                             subject=f"deltas.{thread_id}.>")

    def _with_purge(self, d: thread_decisions.Decision, thread_id: str
                    ) -> thread_decisions.Decision:
        async def purge() -> None:
            await self._purge(thread_id)

        d.after = purge
        return d

    async def delete_thread(self, cmd: DeleteThread) -> Reply:
        def decide(state: ThreadState, c: DeleteThread) -> thread_decisions.Decision:
            return self._with_purge(thread_decisions.delete_thread(state, c), c.thread_id)

        def replay(state: ThreadState, c: DeleteThread) -> thread_decisions.Decision:
            return self._with_purge(thread_decisions.replay_delete(state, c), c.thread_id)

        return await self.runner.run(cmd, cmd.thread_id, decide, replay)

    async def delete_user_data(self, cmd: DeleteUserData) -> Reply:
        """Delete every thread ``cmd.user_id`` created; one sub-command per thread, so a
        re-sent command resumes where a failed one stopped."""
        deleted: list[str] = []
        seq = 0
        for tid in await self.user_threads.threads_of(cmd.user_id):
            sub = DeleteThread(command_id=f"{cmd.command_id}-{tid}"[:128].replace(".", "_"),
                               user_id=cmd.user_id, thread_id=tid,
                               correlation_id=cmd.command_id)
            reply = await self.delete_thread(sub)
            seq = max(seq, reply.seq or 0)
            deleted.append(tid)
        return Reply.success({"user_id": cmd.user_id, "threads_deleted": deleted}, seq)
