"""Running tools without ever crashing the generation.

``execute_tool`` turns every tool problem into an error result for the model
(``ToolResultPart(is_error=True)`` with a message saying what went wrong):

* arguments that are not JSON or not an object      -> ``Invalid arguments for tool X: ...``
* arguments failing the pydantic model              -> ``Invalid arguments for tool X: a: ...``
* the handler raising                               -> ``Tool X failed: ValueError: ...``
* the handler exceeding ``tool.timeout``            -> ``Tool X timed out after N s``
* a tool name the model made up (``execute_tool_call``) -> ``Unknown tool X; available: ...``

Cancellation (``asyncio.CancelledError``) is not a tool problem: it propagates. A successful
result is converted to JSON-safe data (pydantic models dumped, unknown objects as ``str``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import to_jsonable_python

from events.content import ToolResultPart
from handlers.llm.results import ToolCall
from handlers.llm.tools import Tool, ToolContext

log = logging.getLogger(__name__)


def _error(tool_name: str, call_id: str, message: str) -> ToolResultPart:
    return ToolResultPart(tool_call_id=call_id, tool_name=tool_name, result=message,
                          is_error=True)


def _parse_args(raw_args: str | Mapping[str, Any] | None) -> dict[str, Any]:
    if raw_args is None or raw_args == "":
        return {}
    if isinstance(raw_args, Mapping):
        return dict(raw_args)
    parsed = json.loads(raw_args)
    if not isinstance(parsed, dict):
        raise ValueError(f"expected a JSON object, got {type(parsed).__name__}")
    return parsed


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(arguments)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


async def execute_tool(tool: Tool[Any], ctx: ToolContext[Any],
                       raw_args: str | Mapping[str, Any] | None, *,
                       tool_call_id: str | None = None) -> ToolResultPart:
    """Validate ``raw_args`` (JSON text or dict), run the handler within ``tool.timeout``.

    Never raises for tool problems (see the module docstring); ``tool_call_id`` defaults to
    ``ctx.tool_call_id``."""
    call_id = tool_call_id or ctx.tool_call_id or ""
    try:
        args = tool.args_model.model_validate(_parse_args(raw_args))
    except (ValueError, TypeError) as exc:
        detail = (_validation_message(exc) if isinstance(exc, ValidationError)
                  else str(exc))
        return _error(tool.name, call_id, f"Invalid arguments for tool {tool.name}: {detail}")
    try:
        async with asyncio.timeout(tool.timeout):
            outcome = tool.handler(ctx, args)
            if inspect.isawaitable(outcome):
                outcome = await outcome
    except TimeoutError:
        return _error(tool.name, call_id, f"Tool {tool.name} timed out after {tool.timeout} s")
    except Exception as exc:
        log.info("tool %s failed", tool.name, exc_info=True)
        return _error(tool.name, call_id, f"Tool {tool.name} failed: {type(exc).__name__}: {exc}")
    return ToolResultPart(tool_call_id=call_id, tool_name=tool.name,
                          result=to_jsonable_python(outcome, fallback=str))


async def execute_tool_call(tools: Mapping[str, Tool[Any]], ctx: ToolContext[Any],
                            call: ToolCall) -> ToolResultPart:
    """Run the tool a model asked for; unknown names and unparsable arguments become error
    results. ``ctx.tool_call_id`` need not be set: the call's id is used."""
    tool = tools.get(call.name)
    if tool is None:
        available = ", ".join(sorted(tools)) or "none"
        return _error(call.name, call.id, f"Unknown tool {call.name}; available: {available}")
    if call.args_error is not None:
        return _error(call.name, call.id,
                      f"Invalid arguments for tool {call.name}: {call.args_error}")
    if ctx.tool_call_id != call.id:
        ctx = dataclasses.replace(ctx, tool_call_id=call.id)
    return await execute_tool(tool, ctx, call.args, tool_call_id=call.id)
