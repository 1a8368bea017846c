"""Aborting a generation from any handler process.

``cmd.agent.abort`` may reach a process that is not running the generation. The process
that takes the command:

1. validates it on the thread's current state (read from the log under the thread's
   lock): the thread is the caller's, the message exists and is still ``pending``
   (otherwise ``not_found`` / ``conflict`` "already finished");
2. sets the abort itself if it runs the generation, else publishes a core NATS request
   on ``sig.agent.abort.<thread_id>.<message_id>``. Every handler process subscribes to
   ``sig.agent.abort.>`` without a queue group; only the one running that generation
   answers (after setting its abort), the others stay silent;
3. if nobody answers within ``signal_timeout_s`` (the owner died, or the message was
   left pending by a crash), finalizes the orphaned message as ``failed`` itself, through
   the command runner: an expected-version append with the abort's command id. A still
   running owner then gets a conflict on its next append, refreshes, sees the message is
   no longer pending and stops (``aborted``) instead of writing a second final state.

The owner finalizes its own message as today (``failed``, "generation aborted") and
records the partial usage. The reply says who stopped it: ``{"stopped_by": "owner"}``
(the owner's final event follows moments later) or ``{"stopped_by": "abort"}`` with the
``seq`` of the ``message_finalized`` it appended.

A generation between its pending append and its first model call (building its context)
has not registered yet: an abort in that window finalizes the message as an orphan, and
the owner stops at its first append after the model call (the call's usage is recorded).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from events import ConcurrencyError, MessageFinalized, NotFound
from events.replies import Reply
from handlers import subjects
from handlers.agents.commands import Abort
from handlers.agents.generation import Generator
from handlers.agents.result import abort_key
from handlers.threads.decisions import Decision, require_owned
from handlers.threads.state import ThreadState

log = logging.getLogger(__name__)
SIGNAL_TIMEOUT_S = 0.5
"""How long the process taking an abort waits for the generation's owner to answer."""


def require_pending(state: ThreadState, cmd: Abort) -> None:
    """The thread is the caller's and ``cmd.message_id`` is a pending message in it."""
    require_owned(state, cmd.user_id)
    info = state.messages.get(cmd.message_id)
    if info is None:
        raise NotFound(f"message {cmd.message_id!r} not found in thread {cmd.thread_id!r}",
                       details={"message_id": cmd.message_id, "thread_id": cmd.thread_id})
    if info.status != "pending":
        raise ConcurrencyError(
            f"message {cmd.message_id!r} is already finished ({info.status})",
            current_version=state.version,
            details={"message_id": cmd.message_id, "status": info.status})


def finalize_orphan(state: ThreadState, cmd: Abort) -> Decision:
    require_pending(state, cmd)
    return Decision([MessageFinalized(
        message_id=cmd.message_id, thread_id=cmd.thread_id, status="failed",
        error=cmd.reason, error_code="aborted", finish_reason="aborted")],
        stopped(cmd, "abort"))


def replay_orphan(state: ThreadState, cmd: Abort) -> Decision:
    return Decision([], stopped(cmd, "abort"))


def stopped(cmd: Abort, by: str) -> dict[str, Any]:
    return {"thread_id": cmd.thread_id, "message_id": cmd.message_id, "aborted": True,
            "stopped_by": by}


class AbortSignals:
    """Listens for abort signals of every generation and sends them (see the module)."""

    def __init__(self, generator: Generator, *,
                 signal_timeout_s: float = SIGNAL_TIMEOUT_S) -> None:
        self.generator = generator
        self.signal_timeout_s = signal_timeout_s
        self.nc: NATS | None = None
        self._sub: Subscription | None = None

    async def start(self, nc: NATS) -> None:
        self.nc = nc
        self._sub = await nc.subscribe(f"{subjects.ABORT_SIGNAL}.>", cb=self._on_signal)

    async def stop(self) -> None:
        if self._sub is not None and self.nc is not None and not self.nc.is_closed:
            await self._sub.unsubscribe()
        self._sub = None

    def _abort_local(self, thread_id: str, message_id: str) -> bool:
        ev = self.generator.aborts.get(abort_key(thread_id, message_id))
        if ev is None:
            return False
        ev.set()
        return True

    async def _on_signal(self, msg: Msg) -> None:
        *_, thread_id, message_id = msg.subject.split(".")
        if self._abort_local(thread_id, message_id) and msg.reply:
            await msg.respond(b'{"aborted": true}')

    async def _signal_owner(self, cmd: Abort) -> bool:
        """True if the process running the generation answered (and set its abort)."""
        if self.nc is None:
            return False
        subject = f"{subjects.ABORT_SIGNAL}.{cmd.thread_id}.{cmd.message_id}"
        body = json.dumps({"command_id": cmd.command_id, "reason": cmd.reason}).encode()
        try:
            await self.nc.request(subject, body, timeout=self.signal_timeout_s)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            return False
        return True

    async def abort(self, cmd: Abort) -> Reply:
        runner = self.generator.runner
        async with runner.states.lock(cmd.thread_id):
            state = await runner.states.refresh(cmd.thread_id)
            if cmd.command_id in state.commands:  # re-sent after it finalized an orphan
                return Reply.success(stopped(cmd, "abort"), state.version)
            require_pending(state, cmd)
        if self._abort_local(cmd.thread_id, cmd.message_id) or await self._signal_owner(cmd):
            return Reply.success(stopped(cmd, "owner"))
        log.info("no process runs the generation of %s: finalizing it as aborted",
                 cmd.message_id)
        return await runner.run(cmd, cmd.thread_id, finalize_orphan, replay_orphan)
