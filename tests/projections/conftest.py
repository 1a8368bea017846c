"""Fixtures for projection tests: a running projector on a per-test DuckDB file and stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from events import EventStore
from events.replies import Reply
from projections.projector import Projector, ProjectorConfig
from projections.queries import QueryService, SqlLimits, serve_queries
from projections.view import View
from threadlog.embedded_nats import EmbeddedNats

Ask = Callable[[str, "dict[str, Any] | bytes"], Awaitable[Reply]]


@pytest.fixture
def projector_views() -> list[View] | None:
    """The views the ``projector`` fixture runs (None: all registered); a test module
    overrides it to run a subset."""
    return None


@pytest.fixture
async def projector(store: EventStore, nc: NATS, nats_server: EmbeddedNats,
                    tmp_path: Path, projector_views: list[View] | None
                    ) -> AsyncIterator[Projector]:
    """A projector running in the background over the test's stream."""
    config = ProjectorConfig(db_path=tmp_path / "views.duckdb", stream=store.stream)
    if projector_views is not None:
        config = ProjectorConfig(db_path=config.db_path, stream=store.stream,
                                 views=projector_views)
    p = Projector(config, nc, nats_server.endpoint)
    await p.open()
    task = asyncio.create_task(p.run())
    yield p
    p.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    await p.close()


@pytest.fixture
async def ask(projector: Projector, nc: NATS) -> AsyncIterator[Ask]:
    """Serve the query subjects and return ``ask(name, body) -> Reply``."""
    service = QueryService(projector, sql_limits=SqlLimits(max_rows=1000, time_limit_s=2.0),
                           prefix=f"q{id(projector)}")
    server = await serve_queries(nc, service)

    async def _ask(name: str, body: dict[str, Any] | bytes) -> Reply:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            user = json.loads(data).get("user_id")
        except (ValueError, AttributeError):
            user = None
        msg = await nc.request(service.subject(name, user if isinstance(user, str) else "nobody"),
                               data, timeout=15)
        return Reply.model_validate_json(msg.data)

    yield _ask
    await server.close()
