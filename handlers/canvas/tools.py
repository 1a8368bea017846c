"""Built-in canvas tools an agent can be given: ``tools=[*canvas_tools(), ...]``.

They act through the generation's command client (``ToolContext.client``, the user's),
so a tool does exactly what the user could do over NATS, with the same checks. Edits are
recorded with the agent's name as author and the step's message id. Problems come back
to the model as tool errors (``execute_tool`` turns the raised :class:`CanvasToolError`
into an error result) whose text starts with the error code: ``conflict: ... (details:
{"current_version": 7, ...})`` tells the model to re-read and retry at version 7;
``patch_test_failed``, ``unknown_element``, ``schema_violation``... say what to fix.

A tool call's command id derives from the thread, message and tool call ids: re-running
the same call is idempotent, a new call (a retry by the model) is a new edit.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from events import ThreadlogError, derived_id, new_id
from handlers.canvas import subjects
from handlers.llm.tools import Tool, ToolContext


class CanvasToolError(Exception):
    """A canvas command refused a tool's request; the message is for the model."""


class ReadCanvasArgs(BaseModel):
    canvas_id: str = Field(description="the canvas to read")
    element_ids: list[str] | None = Field(None, description="only these elements")
    version: int | None = Field(None, description="an earlier version (default: current)")


class EditCanvasArgs(BaseModel):
    canvas_id: str = Field(description="the canvas to edit")
    base_version: int = Field(description="the version you read; a stale one is a conflict")
    ops: list[dict[str, Any]] = Field(
        description='RFC 6902 JSON Patch ops, e.g. {"op": "replace", '
                    '"path": "/elements/<id>/width", "value": 300}')
    summary: str | None = Field(None, description="a short description of the change")


class RevertCanvasArgs(BaseModel):
    canvas_id: str
    version: int = Field(description="the edit (its version) to undo")


async def _call(ctx: ToolContext[Any], subject: str, body: dict[str, Any]) -> Any:
    client = ctx.client
    if client is None:
        raise CanvasToolError("canvas tools need the handlers' client (run inside a "
                              "generation)")
    try:
        return (await client.request(subject, {"user_id": client.user_id, **body})).value
    except ThreadlogError as exc:
        details = json.dumps(exc.details, default=str)[:500]
        raise CanvasToolError(f"{exc.code}: {exc.message} (details: {details})") from None


def _command_id(ctx: ToolContext[Any]) -> str:
    return derived_id("canvas-tool", ctx.thread_id or "", ctx.message_id or "",
                      ctx.tool_call_id or new_id())


async def read_canvas(ctx: ToolContext[Any], args: ReadCanvasArgs) -> Any:
    """Read a canvas: its version and elements (all, or the ones named)."""
    body: dict[str, Any] = {"canvas_id": args.canvas_id}
    if args.element_ids is not None:
        body["element_ids"] = args.element_ids
    if args.version is not None:
        body["version"] = args.version
    result = await _call(ctx, subjects.GET, body)
    return {"canvas_id": result["canvas_id"], "version": result["version"],
            "current_version": result["current_version"], "document": result["document"],
            "missing": result["missing"]}


async def edit_canvas(ctx: ToolContext[Any], args: EditCanvasArgs) -> Any:
    """Edit a canvas with JSON Patch ops against the version you read."""
    body: dict[str, Any] = {"command_id": _command_id(ctx), "canvas_id": args.canvas_id,
                            "base_version": args.base_version, "ops": args.ops,
                            "agent_name": ctx.agent_name}
    if args.summary:
        body["summary"] = args.summary
    if ctx.message_id:
        body["message_id"] = ctx.message_id
    return await _call(ctx, subjects.EDIT, body)


async def revert_canvas_edit(ctx: ToolContext[Any], args: RevertCanvasArgs) -> Any:
    """Undo an earlier edit of a canvas (recorded as a new edit)."""
    body: dict[str, Any] = {"command_id": _command_id(ctx), "canvas_id": args.canvas_id,
                            "version": args.version, "agent_name": ctx.agent_name}
    if ctx.message_id:
        body["message_id"] = ctx.message_id
    return await _call(ctx, subjects.REVERT, body)


def canvas_tools(*, revert: bool = True) -> list[Tool[Any]]:
    """``read_canvas``, ``edit_canvas`` and (unless ``revert=False``) ``revert_canvas_edit``."""
    tools: list[Tool[Any]] = [
        Tool("read_canvas", read_canvas.__doc__ or "", ReadCanvasArgs, read_canvas),
        Tool("edit_canvas", edit_canvas.__doc__ or "", EditCanvasArgs, edit_canvas)]
    if revert:
        tools.append(Tool("revert_canvas_edit", revert_canvas_edit.__doc__ or "",
                          RevertCanvasArgs, revert_canvas_edit))
    return tools
