"""Adapters from the generation loop to the model-call and tool layer (``handlers.llm``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from events import ToolResultPart
from handlers.agents.definition import Agent
from handlers.agents.generation import DeltaSink
from handlers.llm.results import ModelResult, TextDelta, ToolCall
from handlers.llm.tool_execution import execute_tool_call
from handlers.llm.tools import ToolContext
from handlers.llm.usage_and_cost import ModelPrice


async def call_step(agent: Agent, messages: list[dict[str, Any]], tools: list[Any], *,
                    on_text: DeltaSink | None, abort: asyncio.Event | None,
                    output_schema: dict[str, Any] | None,
                    prices: Mapping[str, ModelPrice] | None = None) -> ModelResult:
    """One model call of a generation step (streamed when ``on_text`` is given); its
    cost uses ``prices`` (the deployment's per-model overrides) before litellm's map."""
    from handlers.llm.model_call import call_model, stream_model

    response_format = None
    if output_schema is not None:
        response_format = {"type": "json_schema",
                           "json_schema": {"name": output_schema.get("title", "output"),
                                           "schema": output_schema}}
    common: dict[str, Any] = {
        "tools": tools or None, "response_format": response_format,
        "settings": agent.call_settings, "fallbacks": agent.fallback_models,
        "provider_options": agent.provider_options,
        "raw_response_handler": agent.raw_response_handler, "prices": prices}
    if on_text is None:
        return await call_model(agent.model, messages, **common)
    final: ModelResult | None = None
    async for item in stream_model(agent.model, messages, abort=abort, **common):
        if isinstance(item, TextDelta):
            await on_text(item.text)
        elif isinstance(item, ModelResult):
            final = item
    assert final is not None, "a model stream ends with its result"
    return final


def tool_runner(client_for: Any = None) -> Any:
    async def run_tool(tool: Any, call: ToolCall, ctx: dict[str, Any]) -> ToolResultPart:
        agent: Agent = ctx["agent"]
        tctx: ToolContext[Any] = ToolContext(
            agent_name=agent.name, custom=agent.custom_context, user_id=ctx["user_id"],
            thread_id=ctx["thread_id"], prompt_message_id=ctx["prompt_message_id"],
            message_id=ctx["message_id"], tool_call_id=call.id,
            client=client_for(ctx["user_id"]) if client_for else None)
        tools = {tool.name: tool} if tool is not None else {}
        return await execute_tool_call(tools, tctx, call)

    return run_tool
