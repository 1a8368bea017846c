"""Running a command against a thread: dedupe, decide, append, reply.

Guarantees
- A refused command (validation, not found, forbidden...) appends nothing.
- The command's events are appended atomically with ``expected`` = the state's version;
  on a conflict the state is refreshed and the decision re-made (bounded attempts).
- Re-sending a command id returns the first reply and appends nothing: from the command
  log, else (the process died before recording it) from the thread's own events, which
  carry the command id as their causation id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from events import ConcurrencyError, EventStore
from events.replies import Reply
from handlers.command_log import CommandLog
from handlers.commands import Command
from handlers.threads.decisions import Decision
from handlers.threads.state import ThreadState, ThreadStateCache

log = logging.getLogger(__name__)
C = TypeVar("C", bound=Command)


class CommandRunner:
    def __init__(self, store: EventStore, states: ThreadStateCache,
                 command_log: CommandLog | None, *, max_attempts: int = 10) -> None:
        self.store = store
        self.states = states
        self.command_log = command_log
        self.max_attempts = max_attempts

    async def run(self, cmd: C, thread_id: str, decide: Callable[[ThreadState, C], Decision],
                  replay: Callable[[ThreadState, C], Decision]) -> Reply:
        """Decide ``cmd`` on thread ``thread_id`` and append its events.

        ``replay`` rebuilds the decision's result from the thread state when the command
        was already applied (its events are in ``state.commands``).
        """
        if self.command_log is not None:
            stored = await self.command_log.lookup(cmd)
            if stored is not None:
                return stored
        decision, seq = await self.apply(
            thread_id, cmd.command_id, cmd.user_id, lambda st: decide(st, cmd),
            lambda st: replay(st, cmd), correlation_id=cmd.correlation_id)
        return await self._finish(cmd, decision, seq)

    async def apply(self, thread_id: str, command_id: str, user_id: str | None,
                    decide: Callable[[ThreadState], Decision],
                    replay: Callable[[ThreadState], Decision], *,
                    correlation_id: str | None = None) -> tuple[Decision, int]:
        """Decide on the thread's current state and append, under the thread's lock,
        retrying on conflicts. Returns the decision and the thread's version after it."""
        async with self.states.lock(thread_id):
            state = await self.states.get(thread_id)
            for _ in range(self.max_attempts):
                if command_id in state.commands:
                    return replay(state), state.version
                decision = decide(state)
                if not decision.events:
                    return decision, state.version
                try:
                    res = await self.store.append(
                        state.aggregate, decision.events,
                        expected=state.version or "no_stream", command_id=command_id,
                        user_id=user_id, correlation_id=correlation_id)
                except ConcurrencyError:
                    state = await self.states.refresh(thread_id)
                    continue
                if res.duplicate:
                    await self.states.refresh(thread_id)
                else:
                    self.states.advance(state, decision.events, res.last_seq, command_id)
                return decision, res.last_seq
        raise ConcurrencyError(
            f"thread {thread_id!r} kept changing; gave up after {self.max_attempts} attempts",
            current_version=state.version)

    async def apply_two(self, thread_id: str, user_id: str | None,
                        first: tuple[str, Callable[[ThreadState], Decision],
                                     Callable[[ThreadState], Decision]],
                        second: tuple[str, Callable[[ThreadState, Decision], Decision],
                                      Callable[[ThreadState], Decision]], *,
                        correlation_id: str | None = None) -> tuple[Decision, Decision, int]:
        """Two commands on one thread, ``first`` then ``second`` (each ``(command id,
        decide, replay)``; ``second``'s decide also gets ``first``'s decision), as
        :meth:`apply` twice would, in one round trip when both decide one event: the
        second is sent before the first is acknowledged, and stored only if the first is
        the stream's last message (:meth:`EventStore.append_two`). ``second``'s decide
        then sees the state before ``first``'s event: it must not depend on it. Any other
        case (a replay, several events, a conflict, an event in between) takes the
        ordinary path. Returns both decisions and the thread's version after them."""
        (cid1, decide1, replay1), (cid2, decide2, replay2) = first, second
        d1: Decision | None = None
        async with self.states.lock(thread_id):
            state = await self.states.get(thread_id)
            if cid1 not in state.commands and cid2 not in state.commands:
                d1 = decide1(state)
                d2 = decide2(state, d1)
                if len(d1.events) == 1 and len(d2.events) == 1:
                    try:
                        r1, r2 = await self.store.append_two(
                            state.aggregate, d1.events[0], d2.events[0],
                            expected=state.version or "no_stream", command_ids=(cid1, cid2),
                            user_id=user_id, correlation_id=correlation_id)
                    except ConcurrencyError:
                        await self.states.refresh(thread_id)
                    else:
                        if r1.duplicate:
                            await self.states.refresh(thread_id)
                        else:
                            self.states.advance(state, d1.events, r1.last_seq, cid1)
                            if r2 is not None and not r2.duplicate:
                                self.states.advance(state, d2.events, r2.last_seq, cid2)
                                return d1, d2, r2.last_seq
        d1, _ = await self.apply(thread_id, cid1, user_id, decide1, replay1,
                                 correlation_id=correlation_id)
        first_decision = d1
        d2, seq = await self.apply(thread_id, cid2, user_id,
                                   lambda st: decide2(st, first_decision), replay2,
                                   correlation_id=correlation_id)
        return d1, d2, seq

    async def _finish(self, cmd: Command, decision: Decision, seq: int) -> Reply:
        if decision.after is not None:
            await decision.after()
        reply = Reply.success(decision.result, seq)
        if self.command_log is not None:
            await self.command_log.record(cmd, reply)
        return reply
