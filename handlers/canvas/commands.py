"""Canvas command and query models (request bodies). Ids are safe tokens, texts bounded;
anything else is ``invalid_input`` and appends nothing."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from events import SafeId
from handlers.commands import STRICT_INPUT, Command


class CreateCanvas(Command):
    """A canvas in a thread the user owns. ``canvas_id`` defaults to one derived from
    the command id; ``document`` is the initial document (default: no elements)."""

    thread_id: SafeId
    canvas_id: SafeId | None = None
    title: str | None = Field(None, max_length=1_000)
    document: dict[str, Any] = Field(default_factory=lambda: {"elements": {}})


class EditCanvas(Command):
    """Apply RFC 6902 ``ops`` to the canvas at ``base_version`` (must be current)."""

    canvas_id: SafeId
    base_version: int = Field(ge=0)
    ops: list[dict[str, Any]] = Field(min_length=1)
    summary: str | None = Field(None, max_length=1_000)
    message_id: SafeId | None = None
    agent_name: str | None = Field(None, min_length=1, max_length=200,
                                   description="set when an agent makes the edit: the author")


class RevertCanvasEdit(Command):
    """Undo edit ``version`` with a compensating edit (recorded like any edit).
    ``base_version``, if given, must be current (as for an edit)."""

    canvas_id: SafeId
    version: int = Field(ge=1)
    base_version: int | None = Field(None, ge=0)
    summary: str | None = Field(None, max_length=1_000)
    message_id: SafeId | None = None
    agent_name: str | None = Field(None, min_length=1, max_length=200)


class CanvasQuery(BaseModel):
    model_config = STRICT_INPUT

    user_id: SafeId
    canvas_id: SafeId


class GetCanvas(CanvasQuery):
    """The document now, or at ``version``; only ``element_ids`` if given."""

    version: int | None = Field(None, ge=0)
    element_ids: list[SafeId] | None = Field(None, max_length=1_000)


class CanvasHistory(CanvasQuery):
    """Edits newest first. ``cursor`` is the ``next_cursor`` of the previous page."""

    cursor: int | None = Field(None, ge=1)
    limit: int = Field(50, ge=1, le=500)
    element_id: SafeId | None = None
    author: str | None = Field(None, max_length=200)
    include_snippets: bool = True
