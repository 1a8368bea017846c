"""A durable consumer's ``max_ack_pending`` as a global concurrency limit, live.

Shared by the workpool (``scheduler.workpool.limits``) and the generation slots
(``handlers.generation_limits``): every process pulls from one durable consumer, so the
server hands out at most ``max_ack_pending`` unacknowledged messages across all of them.

Guarantees (measured on nats-server 2.15.1)
- :func:`write_limit` with ``limit > 0`` updates ``max_ack_pending`` in place and resumes
  the consumer: in-flight messages are unaffected; a raised limit lets waiting pull
  requests through at once.
- ``limit == 0`` pauses the consumer (``pause_until`` far in the future; server 2.11+):
  ``max_ack_pending`` cannot be 0 (the server reads 0 as its default, 1000). No new
  deliveries in any process; in-flight messages stay held until acked.
- :func:`read_limit` reads 0 for a paused consumer.

Failure modes: a write is a read-modify-write of the consumer config; two writers racing
can undo each other's change, so the writer re-reads and retries until its own change is
visible (:data:`CONFIG_TRIES`), else :class:`Unavailable`. A missing consumer raises
``nats.js.errors.NotFoundError`` (create it first).
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo
from nats.js.errors import NotFoundError

from events.errors import Unavailable

PAUSED_UNTIL = "2999-01-01T00:00:00Z"
SERVER_DEFAULT_MAX_ACK_PENDING = 1000
CONFIG_TRIES = 10


async def consumer_info(js: JetStreamContext, stream: str, consumer: str
                        ) -> ConsumerInfo | None:
    """The consumer's info, or None when it does not exist."""
    try:
        info: ConsumerInfo = await js.consumer_info(stream, consumer)
    except NotFoundError:
        return None
    return info


def limit_of(info: ConsumerInfo, default: int = SERVER_DEFAULT_MAX_ACK_PENDING) -> int:
    """The limit a consumer's info says: 0 when paused, else its ``max_ack_pending``."""
    if getattr(info, "paused", False):
        return 0
    return int(info.config.max_ack_pending or default)


async def read_limit(js: JetStreamContext, stream: str, consumer: str,
                     default: int = SERVER_DEFAULT_MAX_ACK_PENDING) -> int | None:
    """The current limit (0 when paused; None when the consumer does not exist)."""
    info = await consumer_info(js, stream, consumer)
    return None if info is None else limit_of(info, default)


async def write_limit(js: JetStreamContext, stream: str, consumer: str, limit: int) -> None:
    """Set the limit live: 0 pauses the consumer, > 0 sets ``max_ack_pending`` (until
    visible, see the module) and resumes it. Raises ``ValueError`` for ``limit < 0``."""
    if limit < 0:
        raise ValueError("the limit must be >= 0")
    if limit == 0:
        await js.pause_consumer(stream, consumer, PAUSED_UNTIL)
        return
    for _ in range(CONFIG_TRIES):
        info = await consumer_info(js, stream, consumer)
        if info is None:
            raise NotFoundError
        if info.config.max_ack_pending == limit:
            break
        cfg = info.config
        cfg.max_ack_pending = limit
        await js.add_consumer(stream, cfg)
    else:
        raise Unavailable(f"could not set max_ack_pending of consumer {consumer!r} of "
                          f"{stream!r}: concurrent writers kept undoing it")
    await js.resume_consumer(stream, consumer)
