"""Registering the canvas subscribers on the handlers' FastStream broker.

Every reply has the standard shape (``events.replies``) through the broker's error
middleware: errors raised here become ``{"ok": false, "error": {...}}``.
"""

from __future__ import annotations

from typing import Any

from faststream.nats import NatsBroker

from handlers.canvas import subjects
from handlers.canvas.commands import (
    CanvasHistory,
    CreateCanvas,
    EditCanvas,
    GetCanvas,
    RevertCanvasEdit,
)
from handlers.canvas.schema import CanvasSchema
from handlers.canvas.service import CanvasService
from handlers.runner import CommandRunner
from handlers.subjects import COMMAND_QUEUE


def register_canvas_commands(broker: NatsBroker, runner: CommandRunner, *,
                             schema: CanvasSchema | None = None) -> CanvasService:
    """Serve the ``cmd.canvas.*`` subjects; returns the service (its caches, directory)."""
    service = CanvasService(runner.store, runner.states, runner.command_log, schema=schema)

    @broker.subscriber(subjects.CREATE, queue=COMMAND_QUEUE, title=subjects.CREATE,
                       description="Create a canvas in a thread the user owns. Result: "
                                   "{canvas_id, thread_id, version: 0}.")
    async def create_canvas(body: CreateCanvas) -> dict[str, Any]:
        return (await service.create(body)).model_dump(mode="json")

    @broker.subscriber(subjects.EDIT, queue=COMMAND_QUEUE, title=subjects.EDIT,
                       description="Apply a JSON Patch at base_version. Result: {canvas_id, "
                                   "version, base_version, touched, summary}.")
    async def edit_canvas(body: EditCanvas) -> dict[str, Any]:
        return (await service.edit(body)).model_dump(mode="json")

    @broker.subscriber(subjects.REVERT, queue=COMMAND_QUEUE, title=subjects.REVERT,
                       description="Undo an edit with a recorded compensating edit.")
    async def revert_canvas_edit(body: RevertCanvasEdit) -> dict[str, Any]:
        return (await service.revert(body)).model_dump(mode="json")

    @broker.subscriber(subjects.GET, queue=COMMAND_QUEUE, title=subjects.GET,
                       description="The document now or at a version (optionally some "
                                   "elements).")
    async def get_canvas(body: GetCanvas) -> dict[str, Any]:
        return (await service.get(body)).model_dump(mode="json")

    @broker.subscriber(subjects.HISTORY, queue=COMMAND_QUEUE, title=subjects.HISTORY,
                       description="Edits newest first, cursor paginated, by element or "
                                   "author.")
    async def canvas_history(body: CanvasHistory) -> dict[str, Any]:
        return (await service.history(body)).model_dump(mode="json")

    return service
