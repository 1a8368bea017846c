"""Agent flows: human approval, abort, retry-safe prompts, and a real OpenAI-compatible
HTTP server behind litellm's ``openai/`` provider."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel

from events import Aggregate, ThreadlogError, new_id
from handlers.agents.definition import Agent
from handlers.llm.call_settings import NO_BACKOFF, CallSettings
from handlers.llm.scripted import Reply, scripted
from handlers.llm.tools import ToolContext, tool
from handlers.streaming import read_deltas
from tests.conftest import RuntimeFactory
from tests.handlers.llm.fake_openai_server import FakeOpenAIServer, FakeReply
from threadlog.runtime import Runtime

RAN: list[str] = []


class Amount(BaseModel):
    amount: int


@tool(needs_approval=True)
async def refund(ctx: ToolContext[Any], args: Amount) -> str:
    """Refund money to the user."""
    RAN.append(f"refund {args.amount}")
    return f"refunded {args.amount}"


FAST = CallSettings(max_retries=1, backoff=NO_BACKOFF)


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
async def rt(runtime_factory: RuntimeFactory,
             fake_llm: FakeOpenAIServer) -> AsyncIterator[Runtime]:
    model = "t" + new_id()[:8]
    scripted.reset()
    agents = [
        Agent(name="clerk", model=f"scripted/{model}", tools=[refund], call_settings=FAST),
        Agent(name="remote", model="openai/gpt-fake", call_settings=FAST,
              provider_options=fake_llm.provider_options),
    ]
    async with runtime_factory(agents=agents) as r:
        r.parts["model"] = model
        r.parts["llm"] = fake_llm
        yield r


async def events_of(rt: Runtime, tid: str) -> list[Any]:
    return await rt.store.read(Aggregate.thread(tid))


async def test_tool_needing_approval_pauses_then_resumes_when_approved(rt: Runtime) -> None:
    RAN.clear()
    scripted.script(rt.parts["model"], [Reply.tool_call("refund", {"amount": 5}),
                                        Reply.text("Refund done.")])
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    paused = (await c.generate_text("clerk", tid, "refund me 5")).value
    assert paused["status"] == "awaiting_approval" and RAN == []
    call_id = paused["awaiting_approval"][0]
    assert "tool_approval_requested" in [e.type for e in await events_of(rt, tid)]
    done = (await c.decide_approval(tid, call_id, True)).value
    assert RAN == ["refund 5"]
    assert done["generation"]["text"] == "Refund done."
    # the continuation's pending reply (step 3) is appended with the decision, before
    # the tool message (step 2): the order in the log is not the step order
    saved = sorted((e.event for e in await events_of(rt, tid) if e.type == "message_saved"),
                   key=lambda m: m.step_order)  # type: ignore[attr-defined]
    assert [(m.role, m.step_order) for m in saved] == [  # type: ignore[attr-defined]
        ("user", 0), ("assistant", 1), ("tool", 2), ("assistant", 3)]
    with pytest.raises(ThreadlogError) as ei:
        await c.decide_approval(tid, call_id, False)
    assert ei.value.code == "not_found"


async def test_denied_tool_call_returns_an_error_result_to_the_model(rt: Runtime) -> None:
    RAN.clear()
    scripted.script(rt.parts["model"], [Reply.tool_call("refund", {"amount": 9}),
                                        Reply.text("Understood, no refund.")])
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    call_id = (await c.generate_text("clerk", tid, "refund 9")).value["awaiting_approval"][0]
    done = (await c.decide_approval(tid, call_id, False, reason="policy")).value
    assert RAN == [] and done["generation"]["text"] == "Understood, no refund."
    last_request = scripted.requests(rt.parts["model"])[-1].messages
    assert any(m.get("role") == "tool" and "denied" in str(m.get("content"))
               for m in last_request)
    assert "tool_call_failed" in [e.type for e in await events_of(rt, tid)]


async def test_generate_with_existing_prompt_message_does_not_save_it_again(rt: Runtime
                                                                          ) -> None:
    scripted.script(rt.parts["model"], [Reply.text("answer")])
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    pid = (await c.save_message(tid, "user", "the question")).value["messages"][0]["message_id"]
    res = (await c.generate_text("clerk", tid, prompt_message_id=pid)).value
    assert res["prompt_message_id"] == pid and res["text"] == "answer"
    users = [e for e in await events_of(rt, tid)
             if e.type == "message_saved" and e.event.role == "user"]
    assert len(users) == 1


async def test_resent_generate_command_does_not_call_the_model_twice(rt: Runtime) -> None:
    scripted.script(rt.parts["model"], [Reply.text("once")])
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    first = await c.generate_text("clerk", tid, "hi", command_id="gen-1")
    await rt.handlers.runner.command_log.drain()  # type: ignore[union-attr]
    again = await c.generate_text("clerk", tid, "hi", command_id="gen-1")
    assert again.value == first.value
    assert len(scripted.requests(rt.parts["model"])) == 1
    assert len(await rt.store.read(Aggregate("usage", "u1"))) == 1


async def test_crash_between_prompt_and_pending_append_resumes_without_a_second_prompt(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """The prompt and the pending message are two appends: a process dying between them
    leaves the prompt alone; the re-sent command appends the pending message only."""
    scripted.script(rt.parts["model"], [Reply.text("answer after the crash")])
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    store = rt.store
    real_append = store.append

    async def dies_before_pending(agg: Aggregate, events: Any, *args: Any, **kw: Any) -> Any:
        if kw.get("command_id") == "gen-crash-p":
            raise RuntimeError("process died")
        return await real_append(agg, events, *args, **kw)

    async def first_only(agg: Aggregate, first: Any, second: Any, expected: Any,
                         **kw: Any) -> Any:  # the pipelined path: the second never sent
        await real_append(agg, [first], expected, command_id=kw["command_ids"][0],
                          user_id=kw.get("user_id"), correlation_id=kw.get("correlation_id"))
        raise RuntimeError("process died")

    monkeypatch.setattr(store, "append", dies_before_pending)
    monkeypatch.setattr(store, "append_two", first_only)
    with pytest.raises(ThreadlogError):
        await c.generate_text("clerk", tid, "the question", command_id="gen-crash")
    saved = [e.event for e in await events_of(rt, tid) if e.type == "message_saved"]
    assert [m.role for m in saved] == ["user"]
    monkeypatch.undo()
    rt.handlers.states.forget(tid)  # a new process: the state is read from the log
    res = (await c.generate_text("clerk", tid, "the question", command_id="gen-crash")).value
    assert res["text"] == "answer after the crash" and res["status"] == "success"
    evs = await events_of(rt, tid)
    saved = [e.event for e in evs if e.type == "message_saved"]
    assert [(m.role, m.order, m.step_order, m.status) for m in saved] == [
        ("user", 0, 0, "success"), ("assistant", 0, 1, "pending")]
    assert saved[1].prompt_message_id == res["prompt_message_id"] == saved[0].message_id
    final = [e.event for e in evs if e.type == "message_finalized"]
    assert [(f.message_id, f.status) for f in final] == [(res["message_id"], "success")]
    assert len(scripted.requests(rt.parts["model"])) == 1
    assert len(await rt.store.read(Aggregate("usage", "u1"))) == 1


async def test_abort_marks_the_streaming_message_failed_and_keeps_partial_usage(
        rt: Runtime) -> None:
    scripted.script(rt.parts["model"], [Reply.hanging(after_text="partial answer so far ")])
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    stream = c.stream_text("clerk", tid, "talk forever", command_id="gen-abort")
    seen: list[str] = []

    async def consume() -> None:
        async for d in stream:
            seen.append(d)
            if len(seen) == 1:
                from events import derived_id

                await c.abort(tid, derived_id("reply", "gen-abort", "0"))

    with pytest.raises(ThreadlogError) as ei:
        await asyncio.wait_for(consume(), 20)
    assert ei.value.code == "aborted"
    final = [e.event for e in await events_of(rt, tid) if e.type == "message_finalized"]
    assert final[-1].status == "failed" and "abort" in (final[-1].error or "")
    usage = await rt.store.read(Aggregate("usage", "u1"))
    assert len(usage) == 1 and usage[0].event.usage.completion_tokens > 0


async def test_late_subscriber_catches_up_on_deltas_by_cursor(rt: Runtime) -> None:
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"
    scripted.script(rt.parts["model"], [Reply.text(text)])
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    res = await c.generate_text("clerk", tid, "greek", stream=True, command_id="gen-late")
    from events import derived_id

    mid = derived_id("reply", "gen-late", "0")
    chunks = [ch async for ch in read_deltas(rt.nc, "u1", tid, mid)]
    assert "".join(ch["text"] for ch in chunks) == res.value["text"] == text
    assert chunks[-1]["done"] and chunks[-1]["status"] == "success"
    tail = [ch async for ch in read_deltas(rt.nc, "u1", tid, mid, from_chunk=2)]
    assert tail == chunks[2:]


async def test_agent_over_a_real_openai_compatible_http_server(rt: Runtime) -> None:
    llm: FakeOpenAIServer = rt.parts["llm"]
    llm.script("gpt-fake", FakeReply.error(500), FakeReply.of_text("hello over http"))
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    res = (await c.generate_text("remote", tid, "hi")).value
    assert res["text"] == "hello over http"
    assert len(llm.requests_for("gpt-fake")) == 2  # the 500 was retried
    usage = await rt.store.read(Aggregate("usage", "u1"))
    assert len(usage) == 1 and usage[0].event.usage.prompt_tokens == 7  # counted once


async def test_provider_errors_after_retries_fail_the_message(rt: Runtime) -> None:
    llm: FakeOpenAIServer = rt.parts["llm"]
    llm.script("gpt-fake", FakeReply.error(429), FakeReply.error(429))
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    with pytest.raises(ThreadlogError) as ei:
        await c.generate_text("remote", tid, "hi")
    assert ei.value.code == "rate_limited"
    final = [e.event for e in await events_of(rt, tid) if e.type == "message_finalized"]
    assert final[-1].status == "failed"
