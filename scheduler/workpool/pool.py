"""The public :class:`Workpool`: register functions, enqueue work, ask, cancel, limit.

Modelled on Convex's Workpool (``enqueueAction``, ``status``, ``cancel``, ``cancelAll``,
``onComplete``, ``maxParallelism``, retries with backoff), on NATS JetStream::

    pool = Workpool(store, "emails", max_parallelism=5, retry=RetryPolicy(max_attempts=4))

    @pool.function("send")
    async def send(ctx: WorkContext, args: dict) -> str: ...

    @pool.function("sent")
    async def sent(done: CompletionContext) -> None: ...

    work_id = await pool.enqueue("send", {"to": "a@b"}, on_complete="sent", run_after=60)
    async with pool.worker(concurrency=8):          # in any number of processes
        ...

Guarantees
- Durable: an enqueued item is an event (``work_enqueued``) and a WORK-stream message;
  every state change is an event appended before the message is acked. Waits
  (``run_after``/``run_at``, retry backoff) are server-side scheduled messages.
- Global limit: at most ``max_parallelism`` items run at once across all processes
  (``scheduler.workpool.limits``); :meth:`set_max_parallelism` changes it live, 0 pauses.
- A finished item never runs again; ``on_complete`` is recorded exactly once per item
  (see ``scheduler.workpool.item`` for when it can run twice, with the same idempotency
  key). Passing ``work_id`` makes :meth:`enqueue` idempotent.

Failure modes: :class:`NotFound` for an unknown ``work_id``; :class:`InvalidId` for names
or ids that are not subject tokens; :class:`Unavailable` (or nats-py timeouts) when the
server does not answer (an enqueue may have landed: re-enqueue with the same
``work_id``). A worker needs nats-server 2.12+ (message schedules) and 2.11+ (pause).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from events.errors import ConcurrencyError, NotFound
from events.ids import check_token, new_id
from events.store import EventStore
from events.work_events import WorkCanceled, WorkEnqueued, work_aggregate
from scheduler.workpool import journal, limits
from scheduler.workpool.decide import DUE_TOLERANCE_S
from scheduler.workpool.registry import Registry
from scheduler.workpool.retry import RetryPolicy, resolve
from scheduler.workpool.schedule import drop_schedule, publish_now, publish_schedule
from scheduler.workpool.status import WorkState, WorkStatus
from scheduler.workpool.worker import Worker

F = TypeVar("F", bound=Callable[..., Any])
CANCEL_TRIES = 10


class Workpool:
    """A named pool of work items over one event store (see the module docstring).

    ``retry``: the pool's default for items (``False``: no retries unless an item asks;
    ``True``: the default policy; a :class:`RetryPolicy`: that policy).
    ``max_parallelism``: applied at :meth:`setup` (None keeps the current limit, or
    :data:`~scheduler.workpool.limits.DEFAULT_MAX_PARALLELISM` for a new pool).
    ``ack_wait``: how long a silent worker keeps an item before it is redelivered."""

    def __init__(self, nc_or_store: NATS | EventStore, name: str, *,
                 max_parallelism: int | None = None, retry: RetryPolicy | bool = False,
                 ack_wait: float = 30.0, replicas: int = 1) -> None:
        self.store = nc_or_store if isinstance(nc_or_store, EventStore) else EventStore(nc_or_store)
        self._own_store = not isinstance(nc_or_store, EventStore)
        self.layout = limits.PoolLayout(name)
        self.name = name
        self.js = self.store.nc.jetstream(timeout=self.store.timeout)
        self.retry = retry
        self.ack_wait = ack_wait
        self.replicas = replicas
        self._initial_limit = max_parallelism
        self.registry = Registry()
        self._ready = False
        self._setup_lock = asyncio.Lock()

    # ------------------------------------------------------------------ registry
    def function(self, name: str | None = None) -> Callable[[F], F]:
        """Decorator: register a work function (``async (WorkContext, args)``) or an
        ``on_complete`` handler (``async (CompletionContext)``) under ``name``."""
        def deco(fn: F) -> F:
            return self.registry.add(fn, name)
        return deco

    def register(self, fn: F, name: str | None = None) -> F:
        return self.registry.add(fn, name)

    # ------------------------------------------------------------------ setup
    async def setup(self) -> None:
        """Create the WORK stream (and the event stream when given a connection) and
        apply ``max_parallelism`` if one was given. Idempotent; called lazily."""
        if self._own_store:
            await self.store.setup()
        await limits.ensure_stream(self.js, self.layout, self.replicas)
        if self._initial_limit is not None:
            await limits.set_max_parallelism(self.js, self.layout, self._initial_limit,
                                             ack_wait=self.ack_wait)
        self._ready = True

    async def _setup_once(self) -> None:
        async with self._setup_lock:
            if not self._ready:
                await self.setup()

    async def set_max_parallelism(self, limit: int) -> None:
        """Change the global limit for every process now; 0 pauses the pool."""
        await self._setup_once()
        await limits.set_max_parallelism(self.js, self.layout, limit, ack_wait=self.ack_wait)

    async def max_parallelism(self) -> int | None:
        """The current global limit (0: paused; None: no worker or limit set yet)."""
        await self._setup_once()
        return await limits.max_parallelism(self.js, self.layout)

    def worker(self, *, concurrency: int = 8, drain_timeout: float = 10.0) -> Worker:
        """A worker for this process (``async with pool.worker(): ...``), running the
        functions registered so far. ``concurrency`` caps this process's share."""
        return _PoolWorker(self, concurrency=concurrency, drain_timeout=drain_timeout)

    # ------------------------------------------------------------------ work
    async def enqueue(self, fn: Callable[..., Any] | str, args: Any = None, *,
                      on_complete: Callable[..., Any] | str | None = None,
                      context: Any = None, run_after: float | None = None,
                      run_at: datetime | None = None, retry: RetryPolicy | bool | None = None,
                      work_id: str | None = None) -> str:
        """Queue ``fn(ctx, args)``; returns the work id. ``args``, ``context`` and the
        result must be JSON. ``run_after`` (seconds) or ``run_at`` delays the first
        attempt durably. With ``work_id`` a repeated call is the same item."""
        await self._setup_once()
        fn_name = self.registry.name_of(fn)
        done_name = None if on_complete is None else self.registry.name_of(on_complete)
        wid = check_token(work_id, what="work_id") if work_id else new_id()
        if run_after is not None:
            run_at = datetime.now(UTC) + timedelta(seconds=run_after)
        if run_at is not None and run_at.tzinfo is None:
            run_at = run_at.replace(tzinfo=UTC)
        event = WorkEnqueued(work_id=wid, pool=self.name, fn=fn_name, args=args,
                             on_complete=done_name, context=context, run_at=run_at,
                             retry=resolve(retry, self.retry).spec())
        try:
            await self.store.append(work_aggregate(wid), [event], expected="no_stream",
                                    command_id=f"work-{wid}-enqueue")
        except ConcurrencyError:
            state = await journal.load(self.store, wid)
            if state is None or state.pool != self.name or state.fn != fn_name:
                raise
            if state.phase != "pending" or state.attempts:
                return wid  # the first enqueue's message is long delivered
            run_at = state.run_at
        await self._publish_first(wid, fn_name, run_at)
        return wid

    async def _publish_first(self, work_id: str, fn: str, run_at: datetime | None) -> None:
        now = datetime.now(UTC)
        if run_at is not None and (run_at - now).total_seconds() > DUE_TOLERANCE_S:
            await publish_schedule(self.js, self.layout, work_id, fn, run_at, key="due-0")
        else:
            await publish_now(self.js, self.layout, work_id, fn, key="enqueue")

    async def status(self, work_id: str) -> WorkStatus:
        """``pending`` | ``running`` | ``finished`` with attempts (and the result)."""
        return (await self._state(work_id)).status()

    async def _state(self, work_id: str) -> WorkState:
        state = await journal.load(self.store, check_token(work_id, what="work_id"))
        if state is None or state.pool != self.name:
            raise NotFound(f"no work item {work_id!r} in pool {self.name!r}",
                           details={"work_id": work_id, "pool": self.name})
        return state

    async def cancel(self, work_id: str, reason: str = "") -> bool:
        """Cancel an unfinished item: True if this call canceled it. A pending item never
        starts; a running attempt gets ``CancelledError`` at its next heartbeat and its
        result is discarded. ``on_complete`` then runs with ``kind="canceled"``."""
        await self._setup_once()
        for _ in range(CANCEL_TRIES):
            state = await self._state(work_id)
            if state.phase == "finished":
                return False
            try:
                await journal.append(self.store, state, WorkCanceled(work_id=work_id,
                                                                     reason=reason),
                                     step="cancel")
                break
            except ConcurrencyError:
                continue
        else:
            return False
        if state.phase == "pending":
            await drop_schedule(self.js, self.layout, work_id)
            if state.on_complete is not None:  # run the completion now, not when due
                await publish_now(self.js, self.layout, work_id, state.fn, key="cancel")
        return True

    async def cancel_all(self, reason: str = "") -> int:
        """Cancel every unfinished item of the pool that has a message on the WORK
        stream now (items enqueued meanwhile may escape). Returns how many."""
        await self._setup_once()
        ids = await self._queued_ids()
        done = await asyncio.gather(*(self.cancel(i, reason) for i in ids))
        return sum(done)

    async def _queued_ids(self) -> list[str]:
        ids: dict[str, None] = {}
        seq = 1
        while True:
            try:
                msg = await self.js.get_msg(self.layout.stream, seq=seq, next=True,
                                            subject=f"work.{self.name}.>")
            except (NotFoundError, NatsError):
                break
            ids[(msg.data or b"").decode()] = None
            seq = int(msg.seq or 0) + 1
        return [i for i in ids if i]

    async def close(self) -> None:
        """Close the event store this pool made (a given one stays the caller's)."""
        if self._own_store:
            await self.store.close()


class _PoolWorker(Worker):
    """A :class:`Worker` that sets its pool up first."""

    def __init__(self, pool: Workpool, *, concurrency: int, drain_timeout: float) -> None:
        super().__init__(pool.store, pool.js, pool.layout, pool.registry,
                         ack_wait=pool.ack_wait, concurrency=concurrency,
                         drain_timeout=drain_timeout)
        self.pool = pool

    async def start(self) -> Worker:
        await self.pool._setup_once()
        return await super().start()
