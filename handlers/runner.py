"""Running a command against a thread: the generic pipeline (``handlers.aggregate_runner``)
for thread aggregates, plus two commands in one round trip (:meth:`CommandRunner.apply_two`).

Guarantees
- A refused command (validation, not found, forbidden...) appends nothing.
- The command's events are appended atomically with ``expected`` = the state's version;
  on a conflict the state is refreshed and the decision re-made (bounded attempts).
- Re-sending a command id returns the first reply and appends nothing: from the command
  log, else (the process died before recording it) from the thread's own events, which
  carry the command id as their causation id.
- :meth:`CommandRunner.apply_chain`: a command's events in order, not atomically (one
  round trip, no batch); a chain cut short (a crash, a conflict) is finished by applying
  the same command again: the events already in the thread are skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from events import ConcurrencyError, EventStore, ThreadlogError
from events.catalogue import Event
from events.replies import Reply
from handlers.aggregate_runner import AggregateKind, AggregateRunner
from handlers.command_log import CommandLog
from handlers.commands import Command
from handlers.threads.decisions import Decision
from handlers.threads.state import ThreadState, ThreadStateCache

log = logging.getLogger(__name__)
C = TypeVar("C", bound=Command)


def thread_kind(states: ThreadStateCache) -> AggregateKind[ThreadState, Decision]:
    """Threads: a command is applied when its id is among the state's recent commands
    (the reply's seq is then the thread's version, as before)."""
    return AggregateKind(
        "thread",
        applied=lambda st, cid: st.version if cid in st.commands else None,
        advance=lambda st, d, seq, cid: states.advance(st, d.events, seq, cid))


class CommandRunner:
    """:class:`AggregateRunner` over threads (``pipeline``), keyed by thread id, with the
    signatures the thread and agent handlers use."""

    def __init__(self, store: EventStore, states: ThreadStateCache,
                 command_log: CommandLog | None, *, max_attempts: int = 10) -> None:
        self.store = store
        self.states = states
        self.command_log = command_log
        self.pipeline = AggregateRunner(store, states, command_log, thread_kind(states),
                                        max_attempts=max_attempts)

    async def run(self, cmd: C, thread_id: str, decide: Callable[[ThreadState, C], Decision],
                  replay: Callable[[ThreadState, C], Decision]) -> Reply:
        """Decide ``cmd`` on thread ``thread_id`` and append its events.

        ``replay`` rebuilds the decision's result from the thread state when the command
        was already applied (its events are in ``state.commands``)."""
        return await self.pipeline.run(cmd, thread_id, lambda st: decide(st, cmd),
                                       lambda st: replay(st, cmd))

    async def apply(self, thread_id: str, command_id: str, user_id: str | None,
                    decide: Callable[[ThreadState], Decision],
                    replay: Callable[[ThreadState], Decision], *,
                    correlation_id: str | None = None) -> tuple[Decision, int]:
        """Decide on the thread's current state and append, under the thread's lock,
        retrying on conflicts. Returns the decision and the thread's version after it."""
        return await self.pipeline.apply(thread_id, command_id, user_id, decide, replay,
                                         correlation_id=correlation_id)

    async def apply_chain(self, thread_id: str, command_id: str, user_id: str | None,
                          events: Sequence[Event], *,
                          check: Callable[[ThreadState, Sequence[Event]], bool] | None = None,
                          correlation_id: str | None = None) -> int:
        """Append the events of ``command_id`` in order (:meth:`EventStore.append_chain`),
        under the thread's lock, skipping those the thread holds already.

        The thread's events of ``command_id`` (``state.commands``) are taken as the first
        of ``events`` (the same events, as a re-run of the command builds them), so an
        interrupted chain is finished and a complete one appends nothing; when they are
        not those events (another process ran the command with other results), nothing
        is appended and a ``conflict`` error raised. ``check(state,
        rest)`` runs before each attempt on the events still to append: it raises to
        refuse, or returns ``False`` to append nothing. On a conflict the state is
        refreshed and the check made again (``max_attempts``). Returns the thread's
        version after the chain.

        Failure modes: a command whose events the state no longer remembers
        (``MAX_REMEMBERED_COMMANDS`` later commands on the thread) is appended again:
        inside the duplicate window the store answers duplicates, past it the events
        would be stored twice."""
        async with self.states.lock(thread_id):
            state = await self.states.get(thread_id)
            for _ in range(self.pipeline.max_attempts):
                held = list(state.commands.get(command_id, ()))
                stored = len(held)
                if held != list(events[:stored]):
                    raise ThreadlogError(
                        f"thread {thread_id!r} holds other events of command {command_id!r}",
                        code="conflict", details={"command_id": command_id})
                rest = list(events[stored:])
                if not rest or (check is not None and not check(state, rest)):
                    return state.version
                try:
                    res = await self.store.append_chain(
                        state.aggregate, rest, expected=state.version or "no_stream",
                        command_id=command_id, first_index=stored, user_id=user_id,
                        correlation_id=correlation_id)
                except ConcurrencyError:
                    state = await self.states.refresh(thread_id)
                    continue
                if res.duplicate:
                    state = await self.states.refresh(thread_id)
                    continue
                for ev, seq in zip(rest, res.seqs, strict=True):
                    self.states.advance(state, [ev], seq, command_id)
                return res.last_seq
        raise ConcurrencyError(
            f"thread {thread_id!r} kept changing; gave up after "
            f"{self.pipeline.max_attempts} attempts", current_version=state.version)

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
