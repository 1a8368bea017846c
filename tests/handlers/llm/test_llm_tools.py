"""Tools: schema the model sees, execution that never crashes, context, resolution."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel, Field

from handlers.llm import (
    Tool,
    ToolCall,
    ToolContext,
    execute_tool,
    execute_tool_call,
    parse_tool_call,
    resolve_tools,
    tool,
)


class AddArgs(BaseModel):
    a: int = Field(description="First addend")
    b: int = Field(description="Second addend")


@tool
async def add(ctx: ToolContext[Any], args: AddArgs) -> int:
    """Add two integers."""
    return args.a + args.b


@dataclass
class Tenant:
    name: str


class Empty(BaseModel):
    pass


def ctx_of(custom: Any = None) -> ToolContext[Any]:
    return ToolContext(agent_name="agent", custom=custom, user_id="u1", thread_id="t1",
                       prompt_message_id="m1")


def test_the_openai_schema_carries_name_description_and_field_descriptions() -> None:
    schema = add.openai_schema()
    assert schema["type"] == "function"
    function = schema["function"]
    assert function["name"] == "add" and function["description"] == "Add two integers."
    props = function["parameters"]["properties"]
    assert props["a"] == {"description": "First addend", "title": "A", "type": "integer"}
    assert function["parameters"]["required"] == ["a", "b"]


def test_decorator_options_and_a_handler_without_a_pydantic_model_is_refused() -> None:
    @tool(name="transfer", description="Move money", needs_approval=True, timeout=5)
    async def move(ctx: ToolContext[Any], args: AddArgs) -> None:
        return None

    assert (move.name, move.description, move.needs_approval, move.timeout) == (
        "transfer", "Move money", True, 5)
    with pytest.raises(TypeError, match="pydantic model"):
        @tool
        async def bad(ctx: ToolContext[Any], args: dict[str, Any]) -> None:
            return None


async def test_valid_arguments_run_the_handler() -> None:
    result = await execute_tool(add, ctx_of(), '{"a": 2, "b": 3}', tool_call_id="c1")
    assert (result.result, result.is_error, result.tool_call_id) == (5, False, "c1")


async def test_arguments_failing_validation_become_an_error_result_naming_the_field() -> None:
    result = await execute_tool(add, ctx_of(), {"a": 1, "b": "many"})
    assert result.is_error
    assert result.result.startswith("Invalid arguments for tool add: b:")


async def test_arguments_that_are_not_a_json_object_become_an_error_result() -> None:
    for raw in ("{not json", "[1, 2]"):
        result = await execute_tool(add, ctx_of(), raw)
        assert result.is_error and "Invalid arguments for tool add" in result.result


async def test_a_raising_handler_becomes_an_error_result() -> None:
    @tool
    async def explode(ctx: ToolContext[Any], args: Empty) -> None:
        """Fails."""
        raise ValueError("kaboom")

    result = await execute_tool(explode, ctx_of(), "{}")
    assert result.is_error and result.result == "Tool explode failed: ValueError: kaboom"


async def test_a_slow_handler_times_out_into_an_error_result() -> None:
    @tool(timeout=0.01)
    async def stuck(ctx: ToolContext[Any], args: Empty) -> None:
        """Never returns."""
        await asyncio.Event().wait()

    result = await execute_tool(stuck, ctx_of(), "{}")
    assert result.is_error and result.result == "Tool stuck timed out after 0.01 s"


async def test_cancellation_is_not_swallowed() -> None:
    started = asyncio.Event()

    @tool(timeout=None)
    async def waits(ctx: ToolContext[Any], args: Empty) -> None:
        """Waits forever."""
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(execute_tool(waits, ctx_of(), "{}"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_context_reaches_the_handler_with_custom_data_and_the_call_id() -> None:
    seen: list[ToolContext[Tenant]] = []

    @tool
    async def whoami(ctx: ToolContext[Tenant], args: Empty) -> dict[str, Any]:
        """Who is calling."""
        seen.append(ctx)
        return {"tenant": ctx.custom.name, "thread": ctx.thread_id}

    call = ToolCall(id="call_7", name="whoami", args={})
    result = await execute_tool_call({"whoami": whoami}, ctx_of(Tenant("acme")), call)
    assert result.result == {"tenant": "acme", "thread": "t1"}
    assert seen[0].tool_call_id == "call_7" and seen[0].user_id == "u1"


async def test_pydantic_and_odd_results_are_made_json_safe() -> None:
    @tool
    async def model_result(ctx: ToolContext[Any], args: Empty) -> Any:
        """Returns objects."""
        return {"args": AddArgs(a=1, b=2), "when": {1, 2}, "obj": object}

    result = await execute_tool(model_result, ctx_of(), "{}")
    assert result.result["args"] == {"a": 1, "b": 2}
    assert sorted(result.result["when"]) == [1, 2]
    assert isinstance(result.result["obj"], str)


async def test_unknown_tools_and_malformed_model_arguments_become_error_results() -> None:
    unknown = await execute_tool_call({"add": add}, ctx_of(), ToolCall("c", "nope", {}))
    assert unknown.is_error and unknown.result == "Unknown tool nope; available: add"
    garbled = parse_tool_call("c2", "add", '{"a": 1,')
    assert garbled.args == {} and garbled.args_error is not None
    result = await execute_tool_call({"add": add}, ctx_of(), garbled)
    assert result.is_error and "not valid JSON" in result.result


def test_most_specific_tools_win_by_name() -> None:
    def variant(name: str, description: str) -> Tool[Empty]:
        async def handler(ctx: ToolContext[Any], args: Empty) -> None:
            return None
        return Tool(name=name, description=description, args_model=Empty, handler=handler)

    agent_level = [variant("search", "agent"), variant("lookup", "agent")]
    thread_level = {"search": variant("search", "thread")}
    call_level = [variant("lookup", "call"), variant("extra", "call")]
    merged = resolve_tools(agent_level, thread_level, None, call_level)
    assert {n: t.description for n, t in merged.items()} == {
        "search": "thread", "lookup": "call", "extra": "call"}
