"""The node-kill drill on a :class:`~threadlog.cluster.LocalCluster`: a steady append
load, ``kill -9`` of a follower and then of the stream's leader, every acknowledged
append read back. Used by ``tests/threadlog/test_cluster.py`` and ``threadlog bench
cluster`` alike.

The sequence (a 3-node cluster keeps a quorum with one node down, never with two):

1. kill -9 a node that is not the stream's leader; the load carries on;
   restart it and wait (bounded) until it is a current replica again;
2. kill -9 the stream's current leader; the remaining two elect a new one and the load
   resumes; restart it and wait until it is current again;
3. stop the load and compare every acknowledged append with what the stream holds at
   that sequence.

Guarantees of the figures: ``acknowledged`` counts appends :meth:`EventStore.append`
returned for (a retry of an unacknowledged append re-sends the same message id, so the
stream's dedupe keeps it once); ``lost`` counts acknowledged sequences whose message is
missing or different in the stream after the drill; ``unavailable_s`` is the longest
time between two successful appends while the load ran (the client's reconnect, the
leader election and the retry back-off together).

Failure modes: a node that does not catch up within ``catch_up_s`` raises
:class:`AssertionError` naming the replicas' state; the drill's ``on_killed`` callback
may raise to fail it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from events import Aggregate, EventStore, MessageSaved, TextPart, new_id
from events.envelope import EventEnvelope
from threadlog.cluster import LocalCluster


@dataclass
class Acked:
    """What an acknowledged append put at its sequence."""

    subject: str
    payload: bytes


@dataclass
class AppendLoad:
    """``writers`` concurrent writers, each appending one event at a time to a thread of
    its own; an append that fails is retried (same envelope, same message id) until it is
    acknowledged or the load stops."""

    store: EventStore
    writers: int = 4
    pause_s: float = 0.0
    """Pause between one writer's appends (0: as fast as acknowledgements come)."""
    acked: dict[int, Acked] = field(default_factory=dict)
    failures: int = 0
    ok_times: list[float] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _progress: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> AppendLoad:
        self.ok_times.append(time.monotonic())
        self._tasks = [asyncio.create_task(self._writer(k)) for k in range(self.writers)]
        return self

    async def stop(self) -> None:
        self._stop.set()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    async def _writer(self, k: int) -> None:
        tid = f"load{k}x{new_id()[:8]}"
        agg = Aggregate.thread(tid)
        i = 0
        while not self._stop.is_set():
            (env,) = self.store.envelopes(agg, [MessageSaved(
                message_id=f"m{i}", thread_id=tid, order=i, role="user",
                content=[TextPart(text=f"steady load {k}/{i}")])])
            if not await self._append_until_acked(agg, env):
                return
            i += 1
            if self.pause_s:
                await asyncio.sleep(self.pause_s)

    async def _append_until_acked(self, agg: Aggregate, env: EventEnvelope) -> bool:
        while not self._stop.is_set():
            try:
                res = await self.store.append(agg, [env])
            except Exception:  # unavailable, timeout, reconnecting: retry the same message
                self.failures += 1
                await asyncio.sleep(0.05)
                continue
            self.acked[res.last_seq] = Acked(agg.subject(env.type), env.to_bytes())
            self.ok_times.append(time.monotonic())
            self._progress.set()
            return True
        return False

    async def wait_acked(self, more: int, timeout: float) -> None:
        """Wait (bounded) until ``more`` appends beyond the current count are acked."""
        target = len(self.acked) + more
        deadline = time.monotonic() + timeout
        while len(self.acked) < target:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the load made no progress: {len(self.acked)} acked, "
                                     f"wanted {target} within {timeout}s")
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), left)

    @property
    def longest_gap_s(self) -> float:
        return self.longest_gap_between(0.0, float("inf"))

    def longest_gap_between(self, start: float, end: float) -> float:
        """The longest time without an acknowledgement that overlaps ``[start, end]``
        (``time.monotonic()`` instants)."""
        times = sorted(self.ok_times)
        return max((b - a for a, b in itertools.pairwise(times)
                    if b >= start and a <= end), default=0.0)


async def lost_acknowledged(store: EventStore, acked: dict[int, Acked],
                            timeout: float = 60.0) -> list[int]:
    """The acknowledged sequences whose message the stream no longer holds as acked.

    The read is retried from the start (bounded by ``timeout``) when it fails: right
    after a leader change the stream's consumer API can time out for a while."""
    deadline = time.monotonic() + timeout
    while True:
        held: dict[int, tuple[str, bytes]] = {}
        try:
            async for seq, subject, payload in store.replay_raw(min(acked, default=1)):
                if seq in acked:
                    held[seq] = (subject, payload)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
            continue
        return sorted(seq for seq, a in acked.items()
                      if held.get(seq) != (a.subject, a.payload))


async def stream_leader(store: EventStore, timeout: float = 20.0) -> str:
    """The stream's current leader (bounded wait while one is being elected)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            info = await store.js.stream_info(store.stream)
            if info.cluster is not None and info.cluster.leader:
                return str(info.cluster.leader)
            last = info.cluster
        except Exception as exc:  # no meta leader yet, reconnecting
            last = exc
        await asyncio.sleep(0.1)
    raise AssertionError(f"stream {store.stream} has no leader after {timeout}s: {last}")


async def wait_caught_up(cluster: LocalCluster, store: EventStore, name: str,
                         timeout: float = 30.0) -> float:
    """Wait (bounded) until node ``name`` holds the stream up to the leader's last
    sequence as of the call (its own store, from its ``/jsz``) and the leader reports
    every replica current, online and without lag; returns the seconds it took."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    target: int | None = None
    state: object = None
    while time.monotonic() < deadline:
        try:
            if target is None:
                target = await store.last_seq()
            local = cluster.stream_state(name, store.stream) or {}
            info = await store.js.stream_info(store.stream)
            cl = info.cluster
            state = {"target": target, "local": local, "cluster": cl}
            if cl is not None and cl.leader and int(local.get("last_seq") or 0) >= target:
                peers = cl.replicas or []
                if all(p.current and not p.offline and not p.lag for p in peers):
                    return time.monotonic() - t0
        except Exception as exc:  # the node's monitor port not up yet, an election
            state = exc
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} did not catch up on {store.stream} in {timeout}s: {state}")


@dataclass
class DrillResult:
    acknowledged: int
    lost: list[int]
    failures: int
    unavailable_s: float
    killed: list[str]
    catch_up_s: list[float]
    unavailable_after_kill_s: list[float]
    """Per kill: the longest time without an acknowledgement from the kill to the
    restart (the follower's kill should cost about nothing, the leader's an election)."""


OnKilled = Callable[[str], Awaitable[None]]


async def node_kill_drill(cluster: LocalCluster, store: EventStore, *, writers: int = 4,
                          pause_s: float = 0.0, steady: int = 100, catch_up_s: float = 30.0,
                          first: str | None = None, on_killed: OnKilled | None = None
                          ) -> DrillResult:
    """Run the drill (see the module docstring) on ``store``'s stream (replicated on
    ``cluster``); ``first`` is the follower to kill first (ignored when it is the
    leader: then the leader's kill is the one that hits it); ``on_killed(name)`` runs
    right after each kill, under the load."""
    load = AppendLoad(store, writers=writers, pause_s=pause_s).start()
    killed: list[str] = []
    catch_up: list[float] = []
    windows: list[tuple[float, float]] = []
    try:
        await load.wait_acked(steady, 30)
        leader = await stream_leader(store)
        follower = first if first is not None and first != leader else \
            next(n for n in cluster.running() if n != leader)
        for victim in (follower, None):
            name = victim or await stream_leader(store)
            t_kill = time.monotonic()
            cluster.kill(name)
            killed.append(name)
            if on_killed is not None:
                await on_killed(name)
            await load.wait_acked(steady, 60)  # writes carry on with one node down
            windows.append((t_kill, time.monotonic()))
            cluster.restart(name)
            catch_up.append(await wait_caught_up(cluster, store, name, catch_up_s))
        await load.wait_acked(steady, 30)
    finally:
        await load.stop()
    lost = await lost_acknowledged(store, load.acked)
    return DrillResult(len(load.acked), lost, load.failures, load.longest_gap_s, killed,
                       catch_up, [load.longest_gap_between(a, b) for a, b in windows])
