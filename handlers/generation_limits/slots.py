"""Generation slots: a limit on generations running their steps at once, across every
handler process, on one JetStream consumer.

Layout (``<EVENTS>_GENSLOTS``: work-queue retention, file storage, no max age)::

    enter:  publish a permit  genslot.<EVENTS>.<command id>  (one message, empty body)
            fetch ONE message from the shared durable consumer ``slots``
            (permits are fungible: any process's permit will do)
    hold:   in-progress heartbeats every ack_wait / 3 while the steps run
    leave:  ack it

The consumer's ``max_ack_pending`` is the limit (``events.consumer_limits``): the
server delivers at most that many unacknowledged permits across all processes. Each
entrant publishes one permit and consumes one, so there are always at least as many
permits as entrants waiting.

Guarantees
- Global: never more than ``max_parallelism`` holders at once (while each holder's
  heartbeats reach the server: see Failure modes). Live changes take effect at once for
  waiters (a raised limit lets them through; in-flight holders are never interrupted);
  ``0`` pauses: nobody enters, holders finish.
- A dead process's held permits are redelivered ``ack_wait`` after its last heartbeat
  to a waiter elsewhere: the slots come back by themselves.
- Waiting holds nothing but a local future (one pull request per process at a time, by
  the process's dispatcher). A wait given up (abort, deadline, cancellation) leaks no
  slot: a permit the dispatcher receives for it (or received just before) is acked at
  once; a wait that got nothing leaves one extra permit in the stream, which the
  dispatcher consumes (acks) the next time it can (a ``debt``).

Failure modes
- No max age on the stream, on purpose: measured on nats-server 2.15.1, a message
  removed by ``max_age`` while delivered-unacked is dropped from ``num_ack_pending``
  (the limit would leak). Extra permits (a wait given up while the pool was paused, a
  process that died while waiting) stay in the stream until a dispatcher consumes them;
  they never let more than the limit in (only ``max_ack_pending`` does that).
- A holder cut off from the server longer than ``ack_wait`` loses its permit to a
  waiter: the limit may then be exceeded by the cut-off holders until they finish.
- NATS unavailable while entering: :class:`Unavailable` (the generation's steps do not
  start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from events import Unavailable
from events.consumer_limits import consumer_info, limit_of, write_limit
from events.tasks import cancel_and_wait

log = logging.getLogger(__name__)
CONSUMER = "slots"
MAX_PARALLELISM = 100_000
"""The largest limit accepted (the server's own default is 1000)."""


@dataclass(frozen=True)
class SlotsConfig:
    """Timings of the slots. Tests shorten ``ack_wait``."""

    ack_wait: float = 30.0
    """Seconds after which a dead process's held permit goes to a waiter."""
    fetch_timeout: float = 1.0
    """Expiry of each pull request of a process's dispatcher."""
    replicas: int = 1

    @property
    def heartbeat(self) -> float:
        return self.ack_wait / 3


@dataclass(frozen=True)
class SlotsLayout:
    events_stream: str

    @property
    def stream(self) -> str:
        return f"{self.events_stream}_GENSLOTS"

    @property
    def prefix(self) -> str:
        return f"genslot.{self.events_stream}"


@dataclass(frozen=True)
class SlotsStatus:
    max_parallelism: int
    paused: bool
    running: int
    """Permits held now, across processes (the consumer's ``num_ack_pending``)."""
    waiting: int
    """Permits not yet granted (the consumer's ``num_pending``): the generations
    waiting, plus extra permits not yet consumed (see the module)."""

    def to_dict(self) -> dict[str, Any]:
        return {"max_parallelism": self.max_parallelism, "paused": self.paused,
                "running": self.running, "waiting": self.waiting}


async def ensure_slots(js: Any, layout: SlotsLayout, config: SlotsConfig,
                       initial_limit: int) -> None:
    """Create the stream and its consumer if missing. An existing consumer keeps its
    limit (operators' live changes survive restarts); ``ack_wait`` is applied."""
    try:
        await js.stream_info(layout.stream)
    except NotFoundError:
        await js.add_stream(StreamConfig(
            name=layout.stream, subjects=[f"{layout.prefix}.>"],
            retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
            num_replicas=config.replicas))
    info = await consumer_info(js, layout.stream, CONSUMER)
    if info is None:
        try:
            await js.add_consumer(layout.stream, ConsumerConfig(
                durable_name=CONSUMER, ack_policy=AckPolicy.EXPLICIT,
                ack_wait=config.ack_wait, max_deliver=-1,
                max_ack_pending=max(initial_limit, 1)))
        except BadRequestError:  # another process created it meanwhile: keep its limit
            if await consumer_info(js, layout.stream, CONSUMER) is None:
                raise
            return
        if initial_limit == 0:
            await write_limit(js, layout.stream, CONSUMER, 0)
    elif info.config.ack_wait is None or abs(info.config.ack_wait - config.ack_wait) > 1e-3:
        cfg = info.config
        cfg.ack_wait = config.ack_wait
        await js.add_consumer(layout.stream, cfg)


async def read_status(js: Any, layout: SlotsLayout) -> SlotsStatus | None:
    """The limit and the counts now (None: no slots consumer, the limit is off)."""
    info = await consumer_info(js, layout.stream, CONSUMER)
    if info is None:
        return None
    return SlotsStatus(limit_of(info), bool(getattr(info, "paused", False)),
                       int(info.num_ack_pending or 0), int(info.num_pending or 0))


class GenerationSlots:
    """One process's side of the slots: its dispatcher, its held permits' heartbeats."""

    def __init__(self, nc: NATS, events_stream: str, config: SlotsConfig) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.layout = SlotsLayout(events_stream)
        self.config = config
        self._psub: Any = None
        self._waiters: deque[asyncio.Future[Msg]] = deque()
        self._debt = 0
        """Permits published by waits given up without one: consumed when possible."""
        self._held: dict[int, Msg] = {}
        """Permits held here, by ``id()`` (a ``Msg`` is not hashable)."""
        self._dispatcher: asyncio.Task[None] | None = None
        self._beats: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopped = False

    async def start(self, initial_limit: int) -> GenerationSlots:
        await ensure_slots(self.js, self.layout, self.config, initial_limit)
        self._psub = await self.js.pull_subscribe_bind(CONSUMER, stream=self.layout.stream)
        return self

    async def stop(self) -> None:
        """Stop the dispatcher; held permits are left to redelivery (``ack_wait``);
        waiters get :class:`Unavailable`."""
        self._stopped = True
        for fut in self._waiters:  # first: the dispatcher runs while there are waiters
            fut.cancel()
        self._waiters.clear()
        await cancel_and_wait([t for t in (self._dispatcher, self._beats, *self._tasks)
                               if t is not None])  # events.tasks: cancelled until they end
        if self._psub is not None:
            with contextlib.suppress(Exception):
                await self._psub.unsubscribe()
            self._psub = None

    async def settled(self) -> None:
        """Wait until this process's dispatcher and background acks are done: no waiter
        here, and the debt paid (or its last pull expired: paid another time)."""
        while True:
            busy = [t for t in (self._dispatcher, *self._tasks) if t is not None and not t.done()]
            if not busy:
                return
            await asyncio.wait(busy)

    @property
    def waiting_here(self) -> int:
        return sum(1 for f in self._waiters if not f.done())

    @property
    def held_here(self) -> int:
        return len(self._held)

    @contextlib.asynccontextmanager
    async def slot(self, key: str, *, abort: asyncio.Event | None = None,
                   timeout: float | None = None) -> AsyncIterator[bool]:
        """Hold a slot inside the block; yields False (holding nothing) when ``abort``
        was set or ``timeout`` passed before one was free."""
        msg = await self.acquire(key, abort=abort, timeout=timeout)
        try:
            yield msg is not None
        finally:
            if msg is not None:
                await self.release(msg)

    async def acquire(self, key: str, *, abort: asyncio.Event | None = None,
                      timeout: float | None = None) -> Msg | None:
        """Publish a permit and wait for one (see the module); None when given up."""
        if self._psub is None or self._stopped:
            raise Unavailable("generation slots are not started (or stopped)")
        if abort is not None and abort.is_set():
            return None
        # The permit's publish and the wait overlap: the publish is written to the
        # connection first (the server reads a connection in order), its ack is awaited
        # while waiting; a failed publish gives the wait up (Unavailable).
        pub = asyncio.ensure_future(self.js.publish(f"{self.layout.prefix}.{key}", b"",
                                                    stream=self.layout.stream))
        pub.add_done_callback(_retrieve)
        await asyncio.sleep(0)
        fut: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._kick()
        stop = asyncio.ensure_future(abort.wait()) if abort is not None else None
        waits: list[asyncio.Future[Any]] = [fut, pub] if stop is None else [fut, pub, stop]
        loop = asyncio.get_running_loop()
        until = None if timeout is None else loop.time() + timeout
        try:
            while True:
                left = None if until is None else max(until - loop.time(), 0.0)
                done, _ = await asyncio.wait(waits, timeout=left,
                                             return_when=asyncio.FIRST_COMPLETED)
                if pub in done and pub.exception() is None and fut not in done \
                        and (stop is None or stop not in done):
                    waits.remove(pub)  # published: keep waiting for a slot
                    continue
                break
            if fut.done() and not fut.cancelled() and not pub.done():
                with contextlib.suppress(Exception):  # a failure is handled below
                    await pub  # a permit got before our own is confirmed
        except BaseException:
            self._abandon(fut, pub)
            raise
        finally:
            if stop is not None:
                stop.cancel()
        if pub.done() and not _published(pub):
            self._give_up(fut, published=False)
            raise Unavailable(f"cannot publish a generation permit: "
                              f"{pub.exception() if not pub.cancelled() else 'cancelled'}")
        if fut.done() and not fut.cancelled():
            if abort is not None and abort.is_set():
                self._give_up(fut)
                return None
            self._held[id(fut.result())] = fut.result()
            self._beat()
            return fut.result()
        self._give_up(fut)
        if self._stopped:
            raise Unavailable("generation slots stopped while waiting for one")
        return None

    async def release(self, msg: Msg) -> None:
        """Give the slot back: ack the permit (written to the connection, not confirmed:
        a confirmed ack cost ~1 ms per generation in ``bench genlimit``). A lost ack
        returns the slot after ``ack_wait``."""
        self._held.pop(id(msg), None)
        try:
            await msg.ack()
        except Exception as exc:
            log.warning("acking a generation permit failed (back after ack_wait): %s", exc)

    # -- internals ------------------------------------------------------------------------
    def _give_up(self, fut: asyncio.Future[Msg], *, published: bool = True) -> None:
        """A wait ended without using a permit. Its own permit published: ack the one it
        got, or consume one later (debt). Not published: give back the one it got."""
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            msg = fut.result()
            self._spawn(self.release(msg) if published else _nak(msg))
            return
        fut.cancel()
        if published:
            self._debt += 1
            self._kick()

    def _abandon(self, fut: asyncio.Future[Msg], pub: asyncio.Future[Any]) -> None:
        """A wait interrupted (cancelled, stopped) whose own permit's publish may still be
        unconfirmed: a permit it got goes back (nak) and its own, once confirmed,
        becomes a debt; a publish that fails leaves nothing to pay (a permit it got
        must not be consumed for a permit that never existed)."""
        if pub.done():
            self._give_up(fut, published=_published(pub))
            return
        self._give_up(fut, published=False)

        def confirmed(p: asyncio.Future[Any]) -> None:
            if _published(p):
                self._debt += 1
                self._kick()

        pub.add_done_callback(confirmed)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _kick(self) -> None:
        if self._stopped:
            return
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.ensure_future(self._dispatch())

    def _beat(self) -> None:
        if self._beats is None or self._beats.done():
            self._beats = asyncio.ensure_future(self._heartbeats())

    async def _dispatch(self) -> None:
        """Pull one permit at a time while this process has waiters (or debt)."""
        while not self._stopped and (self.waiting_here or self._debt):
            try:
                msgs = await self._psub.fetch(1, timeout=self.config.fetch_timeout)
            except (TimeoutError, nats.errors.TimeoutError):
                if not self.waiting_here:
                    return  # debt only: consumed another time
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("fetching a generation permit failed: %s", exc)
                await asyncio.sleep(self.config.fetch_timeout)
                continue
            for msg in msgs:
                self._hand(msg)

    def _hand(self, msg: Msg) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(msg)
                return
        self._debt = max(self._debt - 1, 0)
        self._spawn(self.release(msg))

    async def _heartbeats(self) -> None:
        while self._held:
            await asyncio.sleep(self.config.heartbeat)
            for msg in list(self._held.values()):
                with contextlib.suppress(Exception):
                    await msg.in_progress()


def _published(pub: asyncio.Future[Any]) -> bool:
    return pub.done() and not pub.cancelled() and pub.exception() is None


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a background publish's failure as seen (it is handled where awaited)."""
    if not fut.cancelled():
        fut.exception()


async def _nak(msg: Msg) -> None:
    with contextlib.suppress(Exception):
        await msg.nak()
