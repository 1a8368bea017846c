"""Agents end to end over a real nats-server with the scripted model through litellm."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel, Field

from events import Aggregate, ThreadlogError, new_id
from handlers.agents.definition import Agent
from handlers.llm.call_settings import NO_BACKOFF, CallSettings
from handlers.llm.scripted import Reply, scripted
from handlers.llm.tools import ToolContext, tool
from tests.conftest import RuntimeFactory
from threadlog.runtime import Runtime


class CityArgs(BaseModel):
    city: str = Field(description="the city")


@tool
async def get_weather(ctx: ToolContext[Any], args: CityArgs) -> dict[str, Any]:
    """Weather in a city."""
    return {"city": args.city, "sky": "sunny", "thread": ctx.thread_id}


FAST = CallSettings(max_retries=1, backoff=NO_BACKOFF)


def agents(model: str) -> list[Agent]:
    return [Agent(name="helper", model=model, instructions="Be brief.", tools=[get_weather],
                  call_settings=FAST)]


@pytest.fixture
async def rt(runtime_factory: RuntimeFactory) -> AsyncIterator[Runtime]:
    model_name = "t" + new_id()[:8]
    scripted.reset()
    async with runtime_factory(agents=agents(f"scripted/{model_name}")) as r:
        r.parts["model"] = model_name
        yield r


async def thread_events(rt: Runtime, tid: str) -> list[Any]:
    return await rt.store.read(Aggregate.thread(tid))


async def test_generate_text_saves_prompt_and_answer_with_usage(rt: Runtime) -> None:
    scripted.script(rt.parts["model"], [Reply.text("Hello there, friend.")])
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    res = await c.generate_text("helper", tid, "hi")
    assert res.value["text"] == "Hello there, friend." and res.value["status"] == "success"
    evs = await thread_events(rt, tid)
    saved = [e.event for e in evs if e.type == "message_saved"]
    assert [(m.role, m.order, m.step_order, m.status) for m in saved] == [
        ("user", 0, 0, "success"), ("assistant", 0, 1, "pending")]
    final = [e.event for e in evs if e.type == "message_finalized"]
    assert final[-1].status == "success" and final[-1].usage.total_tokens > 0
    usage = await rt.store.read(Aggregate("usage", "u1"))
    assert len(usage) == 1 and usage[0].event.usage.total_tokens == res.value["usage"][
        "total_tokens"]


async def test_tool_loop_saves_each_step_and_feeds_results_back(rt: Runtime) -> None:
    scripted.script(rt.parts["model"], [Reply.tool_call("get_weather", {"city": "Paris"}),
                                        Reply.text("It is sunny in Paris.")])
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    res = await c.generate_text("helper", tid, "weather in Paris?")
    assert res.value["text"] == "It is sunny in Paris." and res.value["steps"] == 2
    types = [e.type for e in await thread_events(rt, tid)]
    assert "tool_call_requested" in types and "tool_call_completed" in types
    saved = [e.event for e in await thread_events(rt, tid) if e.type == "message_saved"]
    assert [(m.role, m.step_order) for m in saved] == [
        ("user", 0), ("assistant", 1), ("tool", 2), ("assistant", 3)]
    second_request = scripted.requests(rt.parts["model"])[-1]
    assert any(m.get("role") == "tool" and "sunny" in str(m.get("content"))
               for m in second_request.messages)
    assert len(await rt.store.read(Aggregate("usage", "u1"))) == 2


async def test_bad_tool_arguments_go_back_to_the_model_not_a_crash(rt: Runtime) -> None:
    scripted.script(rt.parts["model"], [Reply.tool_call("get_weather", {"town": 1}),
                                        Reply.text("Sorry.")])
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    res = await c.generate_text("helper", tid, "weather?")
    assert res.value["status"] == "success"
    assert "tool_call_failed" in [e.type for e in await thread_events(rt, tid)]


async def test_context_includes_earlier_messages(rt: Runtime) -> None:
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    await c.save_message(tid, "user", "my name is Ada")
    scripted.script(rt.parts["model"], [Reply.text("ok")])
    await c.generate_text("helper", tid, "what is my name?")
    sent = scripted.requests(rt.parts["model"])[-1].messages
    contents = [str(m.get("content")) for m in sent]
    assert contents[0] == "Be brief." and "my name is Ada" in contents
    assert contents[-1] == "what is my name?"


async def test_provider_failure_marks_pending_message_failed(rt: Runtime) -> None:
    scripted.script(rt.parts["model"], [Reply.error(500), Reply.error(500), Reply.error(500)])
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    with pytest.raises(ThreadlogError):
        await c.generate_text("helper", tid, "hi")
    final = [e.event for e in await thread_events(rt, tid) if e.type == "message_finalized"]
    assert final and final[-1].status == "failed" and final[-1].error


async def test_unknown_agent_and_other_users_thread_append_nothing(rt: Runtime) -> None:
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    before = await rt.store.last_seq()
    with pytest.raises(ThreadlogError) as ei:
        await c.generate_text("nobody", tid, "hi")
    assert ei.value.code == "unknown_agent"
    with pytest.raises(ThreadlogError) as ei:
        await rt.client("u2").generate_text("helper", tid, "hi")
    assert ei.value.code == "forbidden"
    assert await rt.store.last_seq() == before


async def test_stream_text_yields_deltas_that_make_the_final_text(rt: Runtime) -> None:
    text = "one two three four five six seven eight nine ten eleven twelve"
    scripted.script(rt.parts["model"], [Reply.text(text)])
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    stream = c.stream_text("helper", tid, "count")
    got = [d async for d in stream]
    assert "".join(got) == text and len(got) >= 2
    assert stream.result is not None and stream.result.value["text"] == text


async def test_generate_object_validates_against_schema(rt: Runtime) -> None:
    class Person(BaseModel):
        name: str
        age: int

    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    res = await c.generate_object("helper", tid, "make a person", Person.model_json_schema())
    assert Person.model_validate(res.value["object"])


async def test_stream_object_yields_growing_partials_then_the_object(rt: Runtime) -> None:
    class Trip(BaseModel):
        city: str
        days: int
        stops: list[str]

    obj = {"city": "Lisbon", "days": 3, "stops": ["Alfama", "Belem", "Sintra", "Cascais"]}
    scripted.script(rt.parts["model"], [Reply.json(obj)])
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    partials = [p async for p in c.stream_object("helper", tid, "plan", Trip.model_json_schema())]
    assert partials[-1] == obj and len(partials) >= 2
    assert all(set(a) <= set(b) for a, b in itertools.pairwise(partials))
