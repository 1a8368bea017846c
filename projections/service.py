"""Running the projection service: the projector plus its query subscribers.

``run_projection_service`` is what ``python -m projections`` and ``threadlog serve`` run:
it opens the projector, serves the query subjects over nats-py, and applies the log until
cancelled or until ``stop`` is set; shutdown stops the subscribers, finishes the batch in
progress and closes the DuckDB file.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from nats.aio.client import Client as NATS

from events.connection import NatsEndpoint
from projections.projector import Projector, ProjectorConfig
from projections.queries import QueryService, SqlLimits, serve_queries


async def run_projection_service(nc: NATS, nats_url: str | NatsEndpoint,
                                 config: ProjectorConfig, *,
                                 sql_limits: SqlLimits | None = None,
                                 query_prefix: str = "query",
                                 stop: asyncio.Event | None = None,
                                 ready: Callable[[], None] | None = None) -> None:
    """Project the log and answer queries until ``stop`` is set (or the task is cancelled).

    ``ready`` is called once the query subjects are subscribed (the database open, or,
    when it cannot be opened, the projector ``unavailable`` and retrying: queries then
    answer ``unavailable`` with the reason).
    """
    projector = Projector(config, nc, nats_url)
    await projector.try_open()  # unopenable: queries answer unavailable, run() retries
    queries = QueryService(projector, sql_limits=sql_limits, prefix=query_prefix)
    server = await serve_queries(nc, queries)
    run = asyncio.create_task(projector.run())
    if ready is not None:
        ready()
    try:
        if stop is None:
            await run
        else:
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait({run, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if run.done():
                run.result()
    finally:
        await server.close()
        queries.close()
        projector.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        await projector.close()
