"""Fixtures for workflow tests: a run queue of the test's own (stream and subject prefix
unique, deleted afterwards) on the session server, a client, and workers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from events import EventStore, new_id
from scheduler.workflows import WorkflowClient, WorkflowConfig, Workflows, WorkflowWorker
from threadlog.embedded_nats import EmbeddedNats

WorkerFactory = Callable[..., AbstractAsyncContextManager[WorkflowWorker]]


@pytest.fixture
async def wf_config(nc: NATS) -> AsyncIterator[WorkflowConfig]:
    tag = new_id()[:10]
    cfg = WorkflowConfig(stream=f"WF{tag.upper()}", prefix=f"wf{tag}.run", ack_wait=1.0,
                         idle_recheck=5.0)
    yield cfg
    with suppress(Exception):
        await nc.jetstream().delete_stream(cfg.stream)


@pytest.fixture
def workflows() -> Workflows:
    return Workflows()


@pytest.fixture
async def client(store: EventStore, wf_config: WorkflowConfig,
                 workflows: Workflows) -> WorkflowClient:
    c = WorkflowClient(store, wf_config, workflows)
    await c.setup()
    return c


@pytest.fixture
def worker_factory(nats_server: EmbeddedNats, store: EventStore, wf_config: WorkflowConfig,
                   workflows: Workflows) -> WorkerFactory:
    """``async with worker_factory() as w``: a worker on a connection of its own (closed
    on exit, so its pull requests die with it, as a stopped process's would)."""

    @asynccontextmanager
    async def make(registry: Workflows | None = None, *, config: WorkflowConfig | None = None,
                   **kwargs: Any) -> AsyncIterator[WorkflowWorker]:
        conn = await nats_server.endpoint.connect()
        wstore = EventStore(conn, store.spec)
        w = WorkflowWorker(wstore, registry or workflows, config or wf_config, **kwargs)
        try:
            await w.start()
            yield w
        finally:
            await w.stop()
            await wstore.close()
            await conn.close()

    return make
