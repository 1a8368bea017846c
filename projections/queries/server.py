"""Serving the query subjects over core NATS request/reply.

Two adapters over one :class:`QueryService`:
- :func:`serve_queries` subscribes with nats-py (queue group ``projector``) and answers
  each request in its own task, at most ``max_concurrency`` at a time;
- :func:`register_query_subscribers` registers the same subjects on a FastStream
  ``NatsBroker`` (request bodies typed by the pydantic models, so they appear in the
  AsyncAPI document); validation errors are then the broker middleware's to format.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from events.identity import reply_allowed
from projections.queries.service import QUERIES, QUERY_CONCURRENCY, QueryService, QuerySpec

log = logging.getLogger(__name__)


class QueryServer:
    """The nats-py subscriptions of the query subjects; ``await close()`` to stop."""

    def __init__(self, nc: NATS, service: QueryService,
                 max_concurrency: int = QUERY_CONCURRENCY) -> None:
        self.nc = nc
        self.service = service
        self._subs: list[Subscription] = []
        self._slots = asyncio.Semaphore(max_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> QueryServer:
        for spec in QUERIES:
            self._subs.append(await self.nc.subscribe(
                self.service.wildcard(spec), queue="projector", cb=self._cb(spec)))
        await self.nc.flush()  # the server has the subscriptions when start() returns
        return self

    def _cb(self, spec: QuerySpec) -> Any:
        async def on_request(msg: Msg) -> None:
            if msg.reply and not reply_allowed(msg.reply, msg.subject):
                log.warning("dropped a request on %s: its reply subject %r is not an inbox "
                            "of its caller",
                            msg.subject, msg.reply)
                return
            task = asyncio.create_task(self._answer(spec, msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return on_request

    async def _answer(self, spec: QuerySpec, msg: Msg) -> None:
        async with self._slots:
            reply = await self.service.handle_raw(spec, msg.data, subject=msg.subject)
        if msg.reply:
            try:
                await msg.respond(reply.model_dump_json().encode())
            except Exception:
                log.warning("could not answer %s", msg.subject, exc_info=True)

    async def close(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task


async def serve_queries(nc: NATS, service: QueryService) -> QueryServer:
    """Start answering the query subjects on ``nc``; returns the server (``close()``)."""
    return await QueryServer(nc, service).start()


def register_query_subscribers(broker: Any, service: QueryService) -> None:
    """Register the query subjects on a FastStream ``NatsBroker`` (for ``threadlog serve``
    and its AsyncAPI document). The broker's middleware formats validation errors."""
    for spec in QUERIES:
        _register_one(broker, service, spec)


def _register_one(broker: Any, service: QueryService, spec: QuerySpec) -> None:
    async def handler(body: Any) -> dict[str, Any]:
        reply = await service.execute(spec.name, body, operators=spec.operators)
        return reply.model_dump(mode="json")

    handler.__annotations__ = {"body": spec.model, "return": dict[str, Any]}
    subject = service.template(spec)
    broker.subscriber(subject, queue="projector", title=subject,
                      description=spec.description, max_workers=QUERY_CONCURRENCY)(handler)
