"""Usage through the agent: one usage event per model call, exact tokens, never double
counted (streaming, tool loops, retries, aborts), and billed in the UTC month of the call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
import time_machine
from pydantic import BaseModel

from events import Aggregate, ThreadlogError, UsageRecorded, derived_id, new_id
from handlers.agents.definition import Agent
from handlers.billing.spend_ledger import SpendLedger
from handlers.llm.call_settings import NO_BACKOFF, CallSettings
from handlers.llm.scripted import Reply, scripted
from handlers.llm.tools import ToolContext, tool
from scheduler.invoice_computation import compute_invoices
from tests.conftest import RuntimeFactory
from tests.scheduler.test_invoices import usage_table
from threadlog.runtime import Runtime


class CityArgs(BaseModel):
    city: str


@tool
async def get_weather(ctx: ToolContext[Any], args: CityArgs) -> dict[str, Any]:
    """Weather in a city."""
    return {"city": args.city, "sky": "sunny"}


@pytest.fixture
async def rt(runtime_factory: RuntimeFactory) -> AsyncIterator[Runtime]:
    model = "u" + new_id()[:8]
    agent = Agent(name="clerk", model=f"scripted/{model}", tools=[get_weather],
                  call_settings=CallSettings(max_retries=1, backoff=NO_BACKOFF))
    async with runtime_factory(agents=[agent]) as r:
        r.parts["model"] = model
        yield r


async def usage_of(rt: Runtime, user: str) -> list[UsageRecorded]:
    recs = await rt.store.read(Aggregate("usage", user))
    return [r.event for r in recs if isinstance(r.event, UsageRecorded)]


def totals(events: list[UsageRecorded]) -> dict[str, int]:
    out: dict[str, int] = {}
    for ev in events:
        for k, v in ev.usage.model_dump().items():
            out[k] = out.get(k, 0) + v
    return out


async def test_streamed_generation_records_one_usage_event_with_the_streamed_tokens(
        rt: Runtime) -> None:
    scripted.script(rt.parts["model"], [Reply.text("one two three four five six seven")])
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    res = await c.generate_text("clerk", tid, "count", stream=True)
    usage = await usage_of(rt, "u1")
    assert len(usage) == 1
    assert totals(usage) == res.value["usage"] and usage[0].usage.completion_tokens > 0


async def test_tool_loop_records_one_usage_event_per_model_call(rt: Runtime) -> None:
    scripted.script(rt.parts["model"], [Reply.tool_call("get_weather", {"city": "Oslo"}),
                                        Reply.tool_call("get_weather", {"city": "Rome"}),
                                        Reply.text("Sunny in both.")])
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    res = await c.generate_text("clerk", tid, "weather?")
    usage = await usage_of(rt, "u1")
    assert res.value["steps"] == 3 and len(usage) == 3
    assert len({u.call_id for u in usage}) == 3
    assert totals(usage) == res.value["usage"]


async def test_provider_500_then_success_counts_once(rt: Runtime) -> None:
    scripted.script(rt.parts["model"], [Reply.error(500), Reply(content="ok", usage=(7, 3))])
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    res = await c.generate_text("clerk", tid, "hi")
    assert res.value["text"] == "ok"
    usage = await usage_of(rt, "u1")
    assert len(usage) == 1
    assert (usage[0].usage.prompt_tokens, usage[0].usage.completion_tokens) == (7, 3)


async def test_resent_generate_command_records_no_second_usage(rt: Runtime) -> None:
    scripted.script(rt.parts["model"], [Reply.text("once"), Reply.text("twice")])
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    first = await c.generate_text("clerk", tid, "hi", command_id="gen-once")
    again = await c.generate_text("clerk", tid, "hi", command_id="gen-once")
    assert again.value == first.value
    assert len(await usage_of(rt, "u1")) == 1


async def test_aborted_stream_records_its_partial_usage(rt: Runtime) -> None:
    scripted.script(rt.parts["model"], [Reply.hanging(after_text="partial words so far ")])
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    stream = c.stream_text("clerk", tid, "talk", command_id="gen-abort")

    async def consume() -> None:
        async for _ in stream:
            await c.abort(tid, derived_id("reply", "gen-abort", "0"))

    with pytest.raises(ThreadlogError) as ei:
        await asyncio.wait_for(consume(), 20)
    assert ei.value.code == "aborted"
    usage = await usage_of(rt, "u1")
    assert len(usage) == 1 and usage[0].usage.completion_tokens > 0


async def test_call_at_last_second_of_month_is_billed_in_that_month(
        rt: Runtime, tmp_path: Path) -> None:
    scripted.script(rt.parts["model"], [Reply.text("late night answer")])
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    with time_machine.travel(datetime(2025, 1, 31, 23, 59, 59, tzinfo=UTC), tick=False):
        await c.generate_text("clerk", tid, "still January?")
    ledger = SpendLedger(rt.store)
    fold = await ledger.user("u1")
    assert set(fold.by_model) == {"2025-01"}
    con = duckdb.connect(str(tmp_path / "usage.duckdb"))
    await usage_table(con, rt.store)
    jan = compute_invoices(con, "2025-01", datetime(2025, 2, 2, tzinfo=UTC))
    feb = compute_invoices(con, "2025-02", datetime(2025, 3, 2, tzinfo=UTC))
    assert [i.user_id for i in jan.invoices] == ["u1"] and jan.usage_rows == 1
    assert feb.invoices == []
    con.close()
