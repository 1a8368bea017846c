"""Import references of tools (``handlers.agents.tool_refs``): which tools get one, what
a reference resolves to, and the queue headers of a generation's extra tools."""

from __future__ import annotations

import json
from typing import Any

import pytest

from handlers.agents.tool_refs import (
    PROCESS_BOUND_HEADER,
    TOOLS_HEADER,
    ToolRefError,
    carried_tools,
    not_run,
    process_bound,
    queue_headers,
    resolve_ref,
    tool_headers,
    tool_ref,
)
from handlers.llm.tools import Tool, ToolContext, tool

from .call_tools_lib import Bump, cbump, closure_cbump

LIB = "tests.handlers.agents.call_tools_lib"


async def _handler(ctx: ToolContext[Any], args: Bump) -> str:
    return "x"


assigned = Tool(name="assigned", description="", args_model=Bump, handler=_handler)
"""A ``Tool`` built directly at module level: found among its module's globals."""


def test_a_module_level_tool_has_a_reference_that_resolves_to_itself() -> None:
    assert tool_ref(cbump) == f"{LIB}:cbump"
    assert resolve_ref(f"{LIB}:cbump", "cbump") is cbump
    assert tool_ref(assigned) == f"{__name__}:assigned"
    assert resolve_ref(f"{__name__}:assigned", "assigned") is assigned


def test_closures_lambdas_and_copies_have_no_reference() -> None:
    assert tool_ref(closure_cbump()) is None
    lam = Tool(name="lam", description="", args_model=Bump, handler=lambda c, a: "x")
    assert tool_ref(lam) is None

    @tool
    async def local(ctx: ToolContext[Any], args: Bump) -> str:
        return "x"

    assert tool_ref(local) is None
    twin = Tool(name="cbump", description="", args_model=Bump, handler=cbump.handler)
    assert tool_ref(twin) is None  # its qualname names another object: not this one


def test_a_reference_resolves_only_to_the_tool_of_that_name() -> None:
    for ref, name in [(f"{LIB}:cbump", "other"),        # another name
                      (f"{LIB}:agent", "agent"),         # not a Tool
                      (f"{LIB}:missing", "missing"),     # no such attribute
                      ("no_such_module_xyz:t", "t"),     # not importable
                      ("os:system; rm", "x"), ("", "x"), (f"{LIB}:<locals>.t", "t")]:
        with pytest.raises(ToolRefError):
            resolve_ref(ref, name)


def test_queue_headers_name_references_or_mark_the_generation_process_bound() -> None:
    assert queue_headers([]) == {}
    h = queue_headers([cbump])
    assert json.loads(h[TOOLS_HEADER]) == [{"name": "cbump", "ref": f"{LIB}:cbump"}]
    assert carried_tools(h) == [cbump] and process_bound(h) is None
    bound = queue_headers([cbump, closure_cbump()])
    assert bound == {PROCESS_BOUND_HEADER: "cbump"}
    assert process_bound(bound) == ["cbump"]


@pytest.mark.parametrize("value", ["{", "{}", '[{"name": 1, "ref": "a:b"}]', '["a:b"]',
                                   json.dumps([{"name": "t", "ref": "a:b"}] * 201)])
def test_a_malformed_tools_header_is_refused(value: str) -> None:
    with pytest.raises(ToolRefError):
        carried_tools({TOOLS_HEADER: value})


def test_only_tools_that_are_not_the_agents_own_are_named() -> None:
    assert tool_headers([cbump], [cbump]) == {}
    override = closure_cbump()  # the call's cbump replaces the agent's: named
    assert tool_headers([cbump], [override]) == {PROCESS_BOUND_HEADER: "cbump"}
    assert carried_tools(tool_headers([assigned], [assigned, cbump])) == [cbump]


async def test_the_stand_in_of_a_lost_tool_runs_nothing_and_answers_an_error() -> None:
    from handlers.llm.results import ToolCall
    from handlers.llm.tool_execution import execute_tool_call

    ctx: ToolContext[Any] = ToolContext(agent_name="a", custom=None)
    out = await execute_tool_call({"cbump": not_run("cbump", "gone")},
                                  ctx, ToolCall("c1", "cbump", {"n": 1, "x": [2]}))
    assert out.is_error and "WorkerLost: gone" in str(out.result)
