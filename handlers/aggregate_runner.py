"""The one command pipeline, over any aggregate: dedupe, authorize, decide, append, reply.

A command subject reaches :meth:`AggregateRunner.run` after the broker has authenticated
the connection, limited the body's size and decoded and validated it strictly
(``events.decoding``, the strict command models); errors anywhere become replies through
``events.replies.reply_for``. The runner then:

1. **dedupes** by command id: the command log's stored reply is returned as is (the first
   reply, whatever the state is now);
2. takes the aggregate's lock (one decision at a time per aggregate in this process) and
   its state from an :class:`AggregateStateCache` (caught up first when the kind says
   other processes write it);
3. if the state shows the command already applied (its events carry the command id as
   causation id), rebuilds the reply with ``replay`` (the log outlives the command log);
4. **authorizes** (``authorize(state)``, e.g. "the canvas's thread is the user's");
5. **decides** (``decide(state)``, pure: events and a result, or a ``ThreadlogError``);
6. **appends** the events atomically with ``expected`` = the state's position and
   ``Nats-Msg-Id`` = ``<command id>:<n>``; on ``ConcurrencyError`` it catches the state up
   and goes back to 3 (at most ``max_attempts`` times, then ``conflict``);
7. folds its own events into the cached state (``kind.advance``), runs ``decision.after``
   and **records** the reply in the command log.

Guarantees: a refused command appends nothing; a re-sent command id appends nothing and
gets the first reply (from the command log, else rebuilt from the log, else - inside the
duplicate window - the store's dedupe gives the first sequence back); a stale state never
wins (expected-version append).

Failure modes: NATS errors propagate (``unavailable``/``timeout`` replies); a reply not
recorded (process died after the append) is rebuilt on re-send as in 3.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from events import ConcurrencyError, EventStore
from events.catalogue import Event
from events.replies import Reply
from handlers.command_log import CommandLog
from handlers.commands import Command
from handlers.state_cache import AggregateStateCache, FoldedState


class Decided(Protocol):
    """What a decision must offer the runner (``Decision`` below, the thread and canvas
    decisions)."""

    @property
    def events(self) -> Sequence[Event]: ...

    @property
    def result(self) -> Any: ...

    @property
    def after(self) -> Callable[[], Awaitable[None]] | None: ...


@dataclass
class Decision:
    """Events to append (none: nothing to do) and the reply's result; ``after`` runs once
    the events are appended, before the reply."""

    events: list[Event]
    result: Any
    after: Callable[[], Awaitable[None]] | None = field(default=None)


S = TypeVar("S", bound=FoldedState)
D = TypeVar("D", bound=Decided)


@dataclass(frozen=True)
class AggregateKind(Generic[S, D]):
    """How the runner treats one kind of aggregate.

    ``applied(state, command_id)``: the sequence the command's events ended at if they are
    folded into ``state``, else None. ``advance(state, decision, last_seq, command_id)``:
    fold our own just-appended events (consecutive sequences up to ``last_seq``).
    ``refresh_first``: catch the cached state up before deciding (aggregates that other
    processes append to, such as invoices and usage)."""

    name: str
    applied: Callable[[S, str], int | None]
    advance: Callable[[S, D, int, str], None]
    refresh_first: bool = False


class AggregateRunner(Generic[S, D]):
    """The pipeline of the module docstring for the aggregates of one kind."""

    def __init__(self, store: EventStore, states: AggregateStateCache[S],
                 command_log: CommandLog | None, kind: AggregateKind[S, D], *,
                 max_attempts: int = 10) -> None:
        self.store = store
        self.states = states
        self.command_log = command_log
        self.kind = kind
        self.max_attempts = max_attempts

    async def run(self, cmd: Command, key: str, decide: Callable[[S], D],
                  replay: Callable[[S], D], *,
                  authorize: Callable[[S], Awaitable[None]] | None = None) -> Reply:
        """Run ``cmd`` on the aggregate ``key``; the reply's ``seq`` is the aggregate's
        stream sequence after it (of the original append for a re-sent command)."""
        if self.command_log is not None:
            stored = await self.command_log.lookup(cmd)
            if stored is not None:
                return stored
        decision, seq = await self.apply(key, cmd.command_id, cmd.user_id, decide, replay,
                                         authorize=authorize,
                                         correlation_id=cmd.correlation_id)
        return await self.finish(cmd, decision, seq)

    async def apply(self, key: str, command_id: str, user_id: str | None,
                    decide: Callable[[S], D], replay: Callable[[S], D], *,
                    authorize: Callable[[S], Awaitable[None]] | None = None,
                    correlation_id: str | None = None) -> tuple[D, int]:
        """Steps 2-7 without the command log: the decision and the aggregate's sequence
        after it. For commands that are parts of another (a generation's steps)."""
        async with self.states.lock(key):
            state = await (self.states.refresh(key) if self.kind.refresh_first
                           else self.states.get(key))
            for _ in range(self.max_attempts):
                done_at = self.kind.applied(state, command_id)
                if done_at is not None:
                    return replay(state), done_at
                if authorize is not None:
                    await authorize(state)
                decision = decide(state)
                version = self.states.position(state)
                if not decision.events:
                    return decision, version
                try:
                    res = await self.store.append(
                        state.aggregate, list(decision.events), expected=version or "no_stream",
                        command_id=command_id, user_id=user_id, correlation_id=correlation_id)
                except ConcurrencyError:
                    state = await self.states.refresh(key)
                    continue
                if res.duplicate:
                    await self.states.refresh(key)
                elif not self.states.folded(state, res.last_seq):
                    self.kind.advance(state, decision, res.last_seq, command_id)
                return decision, res.last_seq
        raise ConcurrencyError(
            f"{self.kind.name} {key!r} kept changing; gave up after {self.max_attempts} "
            "attempts", current_version=self.states.position(state))

    async def finish(self, cmd: Command, decision: D, seq: int) -> Reply:
        """Run ``decision.after``, build the reply and record it in the command log."""
        if decision.after is not None:
            await decision.after()
        reply = Reply.success(decision.result, seq)
        if self.command_log is not None:
            await self.command_log.record(cmd, reply)
        return reply
