"""In-process generation: tool and usage-handler levels, storage modes, output models,
and the public API surface."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel

import threadlog
from events import Aggregate, UsageRecorded, new_id
from tests.conftest import RuntimeFactory
from threadlog import Agent, CallSettings, Reply, ThreadOptions, ToolContext, scripted, tool
from threadlog.runtime import Runtime


class NoArgs(BaseModel):
    pass


def make_tool(label: str) -> Any:
    async def lookup(ctx: ToolContext[Any], args: NoArgs) -> str:
        """Look something up."""
        return label

    return tool(lookup)


SEEN: list[str] = []


def handler(label: str) -> Any:
    def on_usage(ev: UsageRecorded) -> None:
        SEEN.append(label)

    return on_usage


@pytest.fixture
async def rt(runtime_factory: RuntimeFactory) -> AsyncIterator[Runtime]:
    model = "t" + new_id()[:8]
    scripted.reset()
    fast = CallSettings(max_retries=0)
    agents = [Agent(name="a", model=f"scripted/{model}", tools=[make_tool("agent")],
                    usage_handler=handler("agent"), call_settings=fast),
              Agent(name="quiet", model=f"scripted/{model}", storage="none",
                    call_settings=fast)]
    async with runtime_factory(agents=agents) as r:
        r.parts["model"] = model
        yield r


async def run_with_tool(rt: Runtime, tid: str, **kw: Any) -> str:
    scripted.script(rt.parts["model"], [Reply.tool_call("lookup", {}), Reply.text("ok")])
    await rt.generate_text("a", "u1", tid, "look it up", **kw)
    tool_msgs = [e.event for e in await rt.store.read(Aggregate.thread(tid))
                 if e.type == "message_saved" and e.event.role == "tool"]
    return str(tool_msgs[-1].content[0].result)


async def test_tools_and_usage_handler_resolve_call_then_thread_then_agent(rt: Runtime
                                                                         ) -> None:
    SEEN.clear()
    tid = (await rt.client("u1").create_thread()).value["thread_id"]
    assert await run_with_tool(rt, tid) == "agent"
    rt.configure_thread(tid, ThreadOptions(tools=[make_tool("thread")],
                                           usage_handler=handler("thread")))
    assert await run_with_tool(rt, tid) == "thread"
    assert await run_with_tool(rt, tid, tools=[make_tool("call")],
                               usage_handler=handler("call")) == "call"
    assert SEEN == ["agent"] * 2 + ["thread"] * 2 + ["call"] * 2


async def test_storage_none_saves_nothing_but_usage(rt: Runtime) -> None:
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    await c.save_message(tid, "user", "remember: blue")
    before = await rt.store.read(Aggregate.thread(tid))
    scripted.script(rt.parts["model"], [Reply.text("blue")])
    res = (await c.generate_text("quiet", tid, "what colour?")).value
    assert res["text"] == "blue"
    assert await rt.store.read(Aggregate.thread(tid)) == before
    sent = scripted.requests(rt.parts["model"])[-1].messages
    assert [m["content"] for m in sent] == ["remember: blue", "what colour?"]
    assert len(await rt.store.read(Aggregate("usage", "u1"))) == 1


async def test_output_model_is_validated_with_one_repair(rt: Runtime) -> None:
    class Point(BaseModel):
        x: int
        y: int

    scripted.script(rt.parts["model"], [Reply.invalid_json(), Reply.json({"x": 1, "y": 2})])
    tid = (await rt.client("u1").create_thread()).value["thread_id"]
    res = await rt.generate_text("a", "u1", tid, "a point", output_model=Point)
    assert res.object == Point(x=1, y=2)


async def test_output_that_stays_invalid_fails_the_message(rt: Runtime) -> None:
    class Point(BaseModel):
        x: int

    scripted.script(rt.parts["model"], [Reply.invalid_json(), Reply.invalid_json()])
    tid = (await rt.client("u1").create_thread()).value["thread_id"]
    with pytest.raises(threadlog.ValidationFailed):
        await rt.generate_text("a", "u1", tid, "a point", output_model=Point)
    final = [e.event for e in await rt.store.read(Aggregate.thread(tid))
             if e.type == "message_finalized"]
    assert final[-1].status == "failed"


def test_public_api_exports_exactly_all() -> None:
    import types

    public = {n for n in dir(threadlog) if not n.startswith("_")
              and not isinstance(getattr(threadlog, n), types.ModuleType)}
    assert set(threadlog.__all__) == public
    for name in threadlog.__all__:
        assert getattr(threadlog, name) is not None
