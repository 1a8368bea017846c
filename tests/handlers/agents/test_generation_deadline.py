"""A generation's own deadline (``Generate.deadline_s``): the client waits that long (plus a
margin) instead of its default timeout, and the handler stops the generation past it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from events import Aggregate, MessageFinalized, ThreadlogError, new_id
from handlers.agents.commands import Generate
from handlers.agents.definition import Agent
from handlers.client import GENERATION_WAIT_MARGIN_S, Client
from handlers.llm.call_settings import NO_BACKOFF, CallSettings
from handlers.llm.litellm_loader import load_litellm
from handlers.llm.scripted import Reply, scripted
from tests.conftest import RuntimeFactory

LATENCY = 2.0


def slow_agent() -> tuple[str, Agent]:
    load_litellm()  # its first import (seconds) is not part of a generation's time here
    model = "dl" + new_id()[:8]
    scripted.configure(model, latency_s=LATENCY,
                       responder=lambda _r: Reply.text("late but done"))
    return model, Agent(name="slow", model=f"scripted/{model}",
                        call_settings=CallSettings(max_retries=0, backoff=NO_BACKOFF))


def test_deadline_is_bounded() -> None:
    base: dict[str, Any] = {"command_id": "c1", "user_id": "u", "agent": "a",
                            "thread_id": "t1", "prompt": "hi"}
    assert Generate.model_validate({**base, "deadline_s": 3600}).deadline_s == 3600
    for bad in (0, -1, 3601):
        with pytest.raises(ValidationError):
            Generate.model_validate({**base, "deadline_s": bad})


def test_client_waits_for_the_deadline() -> None:
    c = Client(None, user_id="u", timeout=1.0)  # type: ignore[arg-type]
    assert c.generation_wait({}) == 6.0
    assert c.generation_wait({"deadline_s": 20}) == 20 + GENERATION_WAIT_MARGIN_S
    c.generation_deadline_s = 30.0
    assert c.generation_wait({}) == 30 + GENERATION_WAIT_MARGIN_S
    assert c.generation_wait({"deadline_s": 2}) == 2 + GENERATION_WAIT_MARGIN_S


async def test_a_slow_generation_completes_within_its_deadline(
        runtime_factory: RuntimeFactory) -> None:
    _, agent = slow_agent()
    async with runtime_factory(agents=[agent]) as rt:
        c = rt.client("u1")
        c.timeout = 0.25  # its default wait (6 x 0.25 s) is shorter than the generation
        tid = (await c.create_thread()).value["thread_id"]
        res = await c.generate_text("slow", tid, "hi", deadline_s=2 * LATENCY)
        assert res.value["text"] == "late but done"
        stream = c.stream_text("slow", tid, "again", deadline_s=2 * LATENCY)
        assert "".join([d async for d in stream]) == "late but done"
        assert stream.result is not None and stream.result.value["text"] == "late but done"
        tid2 = (await c.create_thread()).value["thread_id"]
        with pytest.raises(ThreadlogError) as exc:  # without it: the client's default
            await c.generate_text("slow", tid2, "hi")
        assert exc.value.code == "timeout" and "no reply" in exc.value.message


async def test_the_handler_stops_a_generation_past_its_deadline(
        runtime_factory: RuntimeFactory) -> None:
    _, agent = slow_agent()
    async with runtime_factory(agents=[agent]) as rt:
        c = rt.client("u1")
        tid = (await c.create_thread()).value["thread_id"]
        with pytest.raises(ThreadlogError) as exc:
            await c.generate_text("slow", tid, "hi", deadline_s=0.5)
        assert exc.value.code == "timeout"
        assert exc.value.details.get("deadline_s") == 0.5
        finals = [r.event for r in await rt.store.read(Aggregate.thread(tid))
                  if isinstance(r.event, MessageFinalized)]
        assert [(f.status, f.error) for f in finals] == [
            ("failed", "generation stopped at its deadline (0.5s)")]

