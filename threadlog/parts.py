"""The parts ``threadlog serve`` runs beside the command handlers: the projector (with its
query subjects on the same broker), the invoice scheduler (in the projector's process:
DuckDB allows one process per file) and the live relay of thread events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from handlers.live_relay import LiveRelay
from projections import Projector, ProjectorConfig, QueryService, register_query_subscribers
from projections.queries.sql import SqlLimits
from scheduler import invoice_scheduler_part
from scheduler.workflows import WorkflowClient, WorkflowConfig, Workflows, WorkflowWorker
from scheduler.workflows.service import WorkflowService
from threadlog.runtime import Part, Runtime
from threadlog.settings import Settings


@contextlib.asynccontextmanager
async def projector_part(rt: Runtime) -> AsyncIterator[Projector]:
    """Open the DuckDB file, serve ``query.*`` on ``rt.broker`` and apply the log until
    the runtime stops (as ``rt.parts["projector"]``); the batch in progress finishes and
    the file is closed on exit.

    The projector never takes the process down: a damaged file is moved aside and
    rebuilt from the log; a file that cannot be opened (read-only, permissions, a lock)
    or a write error leaves the projector ``unavailable``/``retrying`` (logged, shown by
    ``ops.status``/``query.<u>.status``, queries answer ``unavailable`` with the reason)
    while the command handlers keep serving; it retries with backoff until it works."""
    rt.settings.data_dir.mkdir(parents=True, exist_ok=True)
    config = ProjectorConfig(db_path=rt.settings.duckdb_path, stream=rt.settings.events_stream)
    projector = Projector(config, rt.nc, rt.endpoint or rt.urls[0])
    await projector.try_open()
    queries = QueryService(projector, sql_limits=SqlLimits(
        time_limit_s=rt.settings.sql_time_limit_s,
        max_memory_mb=rt.settings.sql_memory_limit_mb))
    register_query_subscribers(rt.broker, queries)
    task = asyncio.create_task(projector.run())
    rt.parts["projector"] = projector
    try:
        yield projector
    finally:
        queries.close()
        projector.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await projector.close()


def _cursor(rt: Any) -> Any:
    return rt.parts["projector"].cursor()


def _waiter(rt: Any) -> Any:
    return rt.parts["projector"].wait_for


@contextlib.asynccontextmanager
async def live_relay_part(rt: Runtime) -> AsyncIterator[LiveRelay]:
    """Relay thread events to their users' live subjects (``handlers.live_relay``)."""
    relay = await LiveRelay(rt.nc, rt.settings.events_stream).start()
    rt.parts["live_relay"] = relay
    try:
        yield relay
    finally:
        await relay.stop()


# -- workflows ------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkflowsPart:
    """``rt.parts["workflows"]``: the client, the worker and the subjects' service."""

    client: WorkflowClient
    worker: WorkflowWorker
    service: WorkflowService


def workflow_config(settings: Settings) -> WorkflowConfig:
    """The run queue of this deployment: one per EVENTS stream (``<stream>_WF``)."""
    return WorkflowConfig(stream=f"{settings.events_stream}_WF",
                          prefix=f"wf.{settings.events_stream}.run", replicas=settings.replicas)


@contextlib.asynccontextmanager
async def workflows_part(rt: Runtime) -> AsyncIterator[WorkflowsPart]:
    """Run the workflows of ``rt.app`` (none without an app: the subjects still answer)
    and serve ``cmd.<u>.workflow.*``, ``query.<u>.workflows.*``, ``ops.workflows.*``
    (``scheduler.workflows.service``); the worker takes only the runs it has
    definitions for."""
    registry = rt.app.workflows if rt.app is not None else Workflows()
    config = workflow_config(rt.settings)
    client = WorkflowClient(rt.store, config, registry)
    await client.setup()
    worker = WorkflowWorker(rt.store, registry, config)
    service = WorkflowService(client, max_request_bytes=rt.settings.max_command_bytes)
    await service.start()
    await worker.start()
    rt.parts["workflows"] = WorkflowsPart(client, worker, service)
    try:
        yield rt.parts["workflows"]
    finally:
        await service.stop()
        await worker.stop()


def serve_parts() -> list[Part]:
    """Projector, the invoice scheduler that reads its views, the live relay and the
    workflows (worker and subjects)."""
    return [projector_part, invoice_scheduler_part(_cursor, _waiter), live_relay_part,
            workflows_part]
