"""The WORK stream of a pool and its one durable consumer: the global parallelism limit.

Layout of pool ``P`` (all on stream ``WORK_P``, work-queue retention, file storage):

- ``work.P.run.<fn>``: one message per runnable delivery of an item of function ``fn``
  (body: the work id). The pool's single durable pull consumer ``workers`` filters on
  the ``run`` subjects of the functions some worker registered, so an item of a function
  no worker knows stays queued, untouched, until one does.
- ``work.P.sched.<work_id>``: a scheduled message (nats-server 2.12+ message schedules,
  ``Nats-Schedule: @at <time>``) that the server republishes to ``work.P.run.<fn>`` when
  due. One per item at most (a newer schedule on the subject replaces the older one).

Guarantees
- Global limit: every worker process pulls from the same durable consumer, whose
  ``max_ack_pending`` is ``max_parallelism``: the server hands out at most that many
  unacknowledged messages across all processes together. A worker holds its message
  unacknowledged for the whole attempt (in-progress heartbeats) and its completion.
- Live changes and pause (``events.consumer_limits``, shared with the generation slots):
  ``max_ack_pending`` is updated in place on the durable consumer (in-flight messages are
  unaffected, a raised limit lets waiting pull requests through at once);
  ``max_parallelism=0`` pauses the consumer server-side: no new deliveries in any
  process; in-flight items finish.

Failure modes: configuration writes are read-modify-write of the consumer config; two
writers racing can undo each other's change, so every writer re-reads and retries until
its own change is visible (:data:`CONFIG_TRIES`), else :class:`Unavailable`.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    ConsumerInfo,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from events.consumer_limits import CONFIG_TRIES, read_limit, write_limit
from events.consumer_limits import consumer_info as shared_consumer_info
from events.errors import Unavailable
from events.ids import check_token

DEFAULT_MAX_PARALLELISM = 10
CONSUMER = "workers"
NO_FUNCTION = "_none"
"""The filter of a consumer created before any function is registered (matches nothing)."""
DUPLICATE_WINDOW_S = 120.0


@dataclass(frozen=True)
class PoolLayout:
    """Names of a pool's stream, consumer and subjects."""

    pool: str

    def __post_init__(self) -> None:
        check_token(self.pool, what="pool")

    @property
    def stream(self) -> str:
        return f"WORK_{self.pool}"

    @property
    def consumer(self) -> str:
        return CONSUMER

    def run_subject(self, fn: str) -> str:
        return f"work.{self.pool}.run.{check_token(fn, what='function')}"

    def sched_subject(self, work_id: str) -> str:
        return f"work.{self.pool}.sched.{work_id}"

    @property
    def run_filter(self) -> str:
        return f"work.{self.pool}.run.>"


async def ensure_stream(js: JetStreamContext, layout: PoolLayout, replicas: int = 1) -> None:
    """Create the pool's WORK stream if missing (idempotent; an existing one is kept)."""
    try:
        await js.stream_info(layout.stream)
        return
    except NotFoundError:
        pass
    await js.add_stream(StreamConfig(
        name=layout.stream, subjects=[f"work.{layout.pool}.>"],
        retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
        discard=DiscardPolicy.OLD, num_replicas=replicas,
        duplicate_window=DUPLICATE_WINDOW_S, allow_msg_schedules=True))


async def consumer_info(js: JetStreamContext, layout: PoolLayout) -> ConsumerInfo | None:
    return await shared_consumer_info(js, layout.stream, layout.consumer)


async def ensure_consumer(js: JetStreamContext, layout: PoolLayout, *, ack_wait: float,
                          functions: list[str], max_parallelism: int | None) -> None:
    """Create the durable consumer, or add ``functions`` to its filter and apply
    ``ack_wait`` and ``max_parallelism`` (None or 0: keep the current limit; pausing is
    :func:`set_max_parallelism`'s)."""
    wanted = {layout.run_subject(f) for f in functions}
    for _ in range(CONFIG_TRIES):
        info = await consumer_info(js, layout)
        if info is None:
            limit = max_parallelism if max_parallelism else DEFAULT_MAX_PARALLELISM
            await js.add_consumer(layout.stream, ConsumerConfig(
                durable_name=layout.consumer, ack_policy=AckPolicy.EXPLICIT,
                ack_wait=ack_wait, max_deliver=-1, max_ack_pending=limit,
                filter_subjects=sorted(wanted) or [layout.run_subject(NO_FUNCTION)]))
        else:
            cfg = info.config
            have = set(cfg.filter_subjects or ([cfg.filter_subject] if cfg.filter_subject
                                               else []))
            limit_ok = not max_parallelism or cfg.max_ack_pending == max_parallelism
            if wanted <= have and limit_ok and _same(cfg.ack_wait, ack_wait):
                break
            cfg.filter_subjects = sorted(have | wanted)
            cfg.filter_subject = None
            cfg.ack_wait = ack_wait
            if max_parallelism:
                cfg.max_ack_pending = max_parallelism
            await js.add_consumer(layout.stream, cfg)
    else:
        raise Unavailable(f"could not configure consumer {layout.consumer!r} of "
                          f"{layout.stream!r}: concurrent writers kept undoing it")


async def set_max_parallelism(js: JetStreamContext, layout: PoolLayout, limit: int,
                              *, ack_wait: float) -> None:
    """Change the global limit live; 0 pauses the pool, > 0 sets it and resumes
    (``events.consumer_limits``; the consumer is created first if missing)."""
    if limit < 0:
        raise ValueError("max_parallelism must be >= 0")
    if await consumer_info(js, layout) is None:
        await ensure_consumer(js, layout, ack_wait=ack_wait, functions=[],
                              max_parallelism=limit or None)
    await write_limit(js, layout.stream, layout.consumer, limit)


async def max_parallelism(js: JetStreamContext, layout: PoolLayout) -> int | None:
    """The current global limit (0 when paused; None when no consumer exists yet)."""
    return await read_limit(js, layout.stream, layout.consumer, DEFAULT_MAX_PARALLELISM)


def _same(a: float | None, b: float) -> bool:
    return a is not None and abs(a - b) < 1e-3
