"""``generate_object`` holds on every path: through the ``Client`` (a JSON schema over NATS)
and in-process (``Runtime.generate_text(output_model=...)``) the answer is checked against
the schema, a code fence is stripped, a bad answer gets one repair call showing its errors,
and a bad repair answers ``invalid_model_output`` with the errors (issue 13, part 4)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from events import Aggregate, MessageFinalized, ThreadlogError, new_id
from handlers.agents.definition import Agent
from handlers.llm.call_settings import NO_BACKOFF, CallSettings
from handlers.llm.scripted import Reply, scripted
from tests.conftest import RuntimeFactory


class Plan(BaseModel):
    city: str
    days: int


SCHEMA: dict[str, Any] = Plan.model_json_schema()


def planner() -> tuple[str, Agent]:
    name = "obj" + new_id()[:8]
    return name, Agent(name="planner", model=f"scripted/{name}",
                       call_settings=CallSettings(max_retries=0, backoff=NO_BACKOFF))


async def finals(rt: Any, tid: str) -> list[MessageFinalized]:
    return [r.event for r in await rt.store.read(Aggregate.thread(tid))
            if isinstance(r.event, MessageFinalized)]


async def test_a_wrong_object_through_the_client_is_repaired_once(
        runtime_factory: RuntimeFactory) -> None:
    model, agent = planner()
    scripted.script(model, [Reply.json({"days": "three"}),
                            Reply.json({"city": "Lisbon", "days": 3})])
    async with runtime_factory(agents=[agent]) as rt:
        c = rt.client("u1")
        tid = (await c.create_thread()).value["thread_id"]
        res = await c.generate_object("planner", tid, "Plan a 3-day trip to Lisbon", SCHEMA,
                                      max_steps=1)  # the repair is not a step of its own
        assert res.value["object"] == {"city": "Lisbon", "days": 3}
        assert res.value["steps"] == 2
        requests = scripted.requests(model)
        assert len(requests) == 2
        repair = requests[1].messages
        assert repair[-2]["content"] == json.dumps({"days": "three"})
        assert "city" in repair[-1]["content"] and "days" in repair[-1]["content"]
        [final] = await finals(rt, tid)
        assert final.status == "success"
        assert final.content[0].text == json.dumps({"city": "Lisbon", "days": 3})


async def test_json_in_a_code_fence_is_accepted_without_a_repair(
        runtime_factory: RuntimeFactory) -> None:
    model, agent = planner()
    fenced = '```json\n{"city": "Lisbon", "days": 3}\n```'
    scripted.script(model, [Reply.text(fenced), Reply.text("```\n{\"city\": \"Porto\", "
                                                           "\"days\": 2}\n```")])
    async with runtime_factory(agents=[agent]) as rt:
        c = rt.client("u1")
        tid = (await c.create_thread()).value["thread_id"]
        res = await c.generate_object("planner", tid, "Plan a trip", SCHEMA)
        assert res.value["object"] == {"city": "Lisbon", "days": 3}
        assert res.value["text"] == '{"city": "Lisbon", "days": 3}'
        res = await c.generate_object("planner", tid, "Another", SCHEMA)
        assert res.value["object"] == {"city": "Porto", "days": 2}
        assert len(scripted.requests(model)) == 2  # no repair calls
        # a re-sent command is answered from the record, with the same object
        cid = new_id()
        scripted.script(model, [Reply.text(fenced)])
        first = await c.generate_object("planner", tid, "Again", SCHEMA, command_id=cid)
        again = await c.generate_object("planner", tid, "Again", SCHEMA, command_id=cid)
        assert again.value["object"] == first.value["object"] == {"city": "Lisbon", "days": 3}


async def test_a_failed_repair_is_invalid_model_output_with_the_errors(
        runtime_factory: RuntimeFactory) -> None:
    model, agent = planner()
    scripted.script(model, [Reply.json({"days": "three"}), Reply.text("Lisbon, 3 days")])
    async with runtime_factory(agents=[agent]) as rt:
        c = rt.client("u1")
        tid = (await c.create_thread()).value["thread_id"]
        with pytest.raises(ThreadlogError) as caught:
            await c.generate_object("planner", tid, "Plan a trip", SCHEMA)
        err = caught.value
        assert err.code == "invalid_model_output"
        assert [e["type"] for e in err.details["errors"]] == ["json_invalid"]
        assert {tuple(e["loc"]) for e in err.details["first_errors"]} == {("city",), ("days",)}
        assert err.details["output"] == "Lisbon, 3 days"
        assert len(scripted.requests(model)) == 2
        [final] = await finals(rt, tid)
        assert (final.status, final.error_code) == ("failed", "invalid_model_output")
        assert err.details["message_id"] == final.message_id


async def test_an_invalid_schema_is_refused_before_anything_is_saved(
        runtime_factory: RuntimeFactory) -> None:
    model, agent = planner()
    async with runtime_factory(agents=[agent]) as rt:
        c = rt.client("u1")
        tid = (await c.create_thread()).value["thread_id"]
        before = len(await rt.store.read(Aggregate.thread(tid)))
        with pytest.raises(ThreadlogError) as caught:
            await c.generate_object("planner", tid, "Plan", {"type": "nope"})
        assert caught.value.code == "invalid_input"
        assert len(await rt.store.read(Aggregate.thread(tid))) == before
        assert scripted.requests(model) == []


async def test_in_process_the_schema_and_the_pydantic_model_both_hold(
        runtime_factory: RuntimeFactory) -> None:
    model, agent = planner()
    scripted.script(model, [Reply.text('```json\n{"city": "Lisbon", "days": "3"}\n```'),
                            Reply.json({"city": "Lisbon", "days": 3}),
                            Reply.json({"days": 1}), Reply.json({"city": 5})])
    async with runtime_factory(agents=[agent]) as rt:
        tid = (await rt.client("u1").create_thread()).value["thread_id"]
        res = await rt.generate_text("planner", "u1", tid, "Plan", output_model=Plan)
        assert res.object == Plan(city="Lisbon", days=3) and res.steps == 2
        with pytest.raises(ThreadlogError) as caught:
            await rt.generate_text("planner", "u1", tid, "Plan", output_model=Plan)
        assert caught.value.code == "invalid_model_output"
        assert caught.value.details["seq"] >= 1
