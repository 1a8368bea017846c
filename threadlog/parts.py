"""The parts ``threadlog serve`` runs beside the command handlers: the projector (with its
query subjects on the same broker) and the invoice scheduler (in the projector's
process: DuckDB allows one process per file)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from projections import Projector, ProjectorConfig, QueryService, register_query_subscribers
from scheduler import invoice_scheduler_part
from threadlog.runtime import Part, Runtime


@contextlib.asynccontextmanager
async def projector_part(rt: Runtime) -> AsyncIterator[Projector]:
    """Open the DuckDB file, serve ``query.*`` on ``rt.broker`` and apply the log until
    the runtime stops (as ``rt.parts["projector"]``); the batch in progress finishes and
    the file is closed on exit."""
    rt.settings.data_dir.mkdir(parents=True, exist_ok=True)
    config = ProjectorConfig(db_path=rt.settings.duckdb_path, stream=rt.settings.events_stream)
    projector = Projector(config, rt.nc, rt.urls[0])
    await projector.open()
    register_query_subscribers(rt.broker, QueryService(projector))
    task = asyncio.create_task(projector.run())
    rt.parts["projector"] = projector
    try:
        yield projector
    finally:
        projector.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await projector.close()


def _cursor(rt: Any) -> Any:
    return rt.parts["projector"].cursor()


def _waiter(rt: Any) -> Any:
    return rt.parts["projector"].wait_for


def serve_parts() -> list[Part]:
    """Projector, then the invoice scheduler that reads its views."""
    return [projector_part, invoice_scheduler_part(_cursor, _waiter)]
