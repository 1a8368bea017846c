"""Fixtures for projection tests: a running projector on a per-test DuckDB file and stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from events import EventStore
from projections.projector import Projector, ProjectorConfig
from threadlog.embedded_nats import EmbeddedNats


@pytest.fixture
async def projector(store: EventStore, nc: NATS, nats_server: EmbeddedNats,
                    tmp_path: Path) -> AsyncIterator[Projector]:
    """A projector running in the background over the test's stream."""
    p = Projector(ProjectorConfig(db_path=tmp_path / "views.duckdb", stream=store.stream),
                  nc, nats_server.url)
    await p.open()
    task = asyncio.create_task(p.run())
    yield p
    p.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    await p.close()
