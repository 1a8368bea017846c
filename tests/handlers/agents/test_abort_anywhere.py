"""``cmd.agent.abort`` works from any handler process: the process taking it validates the
message on the thread's state, signals the process running the generation, and finalizes
an orphaned pending message itself when nobody runs it.

"Process B" is a second set of handlers (own connection, state cache, Generator and abort
listener) on the same NATS server and EVENTS stream; its broker is not started, so every
command reaches the runtime's handlers ("process A") only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel

from events import Aggregate, EventStore, ThreadlogError, derived_id, new_id
from handlers import build_handlers, make_broker
from handlers.agents.commands import Generate
from handlers.agents.definition import Agent, AgentRegistry
from handlers.app import Handlers
from handlers.llm.call_settings import NO_BACKOFF, CallSettings
from handlers.llm.scripted import Reply, scripted
from handlers.llm.tools import ToolContext, tool
from tests.conftest import RuntimeFactory
from threadlog.runtime import Runtime


class Query(BaseModel):
    q: str


@tool
async def lookup(ctx: ToolContext[Any], args: Query) -> str:
    """Look something up."""
    return f"found {args.q}"


def agents(model: str) -> list[Agent]:
    return [Agent(name="clerk", model=f"scripted/{model}", tools=[lookup],
                  call_settings=CallSettings(max_retries=1, backoff=NO_BACKOFF))]


@pytest.fixture
async def rt(runtime_factory: RuntimeFactory) -> AsyncIterator[Runtime]:
    model = "a" + new_id()[:8]
    scripted.reset(model)
    async with runtime_factory(agents=agents(model)) as r:
        r.parts["model"] = model
        yield r


@pytest.fixture
async def process_b(rt: Runtime) -> AsyncIterator[Handlers]:
    assert rt.endpoint is not None
    nc = await rt.endpoint.connect()
    store = EventStore(nc, rt.store.spec)
    handlers = await build_handlers(make_broker(rt.endpoint, logger=None), store, None,
                                    AgentRegistry(agents(rt.parts["model"])))
    try:
        yield handlers
    finally:
        await handlers.close()
        await store.close()
        await nc.close()


class Started:
    """The generation's first streamed text: it is now inside its model call."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def __call__(self, text: str) -> None:
        self.event.set()

    async def wait(self) -> None:
        await asyncio.wait_for(self.event.wait(), 10)


def generate_in(h: Handlers, tid: str, command_id: str, on_text: Any) -> asyncio.Future[Any]:
    cmd = Generate(command_id=command_id, user_id="u1", agent="clerk", thread_id=tid,
                   prompt="talk")
    return asyncio.ensure_future(h.generator.generate(cmd, on_text=on_text))


async def finals(rt: Runtime, tid: str, mid: str) -> list[tuple[str, str | None]]:
    return [(e.event.status, e.event.error) for e in await rt.store.read(Aggregate.thread(tid))
            if e.type == "message_finalized" and e.event.message_id == mid]


async def test_abort_taken_by_another_process_stops_the_generation(
        rt: Runtime, process_b: Handlers) -> None:
    scripted.script(rt.parts["model"], [Reply.hanging(after_text="partial words so far ")])
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    started = Started()
    running = generate_in(process_b, tid, "gen-b", started)
    await started.wait()
    mid = derived_id("reply", "gen-b", "0")
    assert mid not in rt.handlers.generator.aborts  # process A does not run it
    res = await c.abort(tid, mid)
    assert res.value["aborted"] and res.value["stopped_by"] == "owner"
    with pytest.raises(ThreadlogError) as ei:
        await asyncio.wait_for(running, 10)
    assert ei.value.code == "aborted"
    assert [s for s, _ in await finals(rt, tid, mid)] == ["failed"]
    usage = await rt.store.read(Aggregate("usage", "u1"))
    assert len(usage) == 1 and usage[0].event.usage.completion_tokens > 0


async def test_abort_follows_the_pending_message_after_a_tool_step(
        rt: Runtime, process_b: Handlers) -> None:
    scripted.script(rt.parts["model"], [Reply.tool_call("lookup", {"q": "x"}),
                                        Reply.hanging(after_text="thinking about it ")])
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    started = Started()
    running = generate_in(process_b, tid, "gen-t", started)
    await started.wait()
    first, current = derived_id("reply", "gen-t", "0"), derived_id("reply", "gen-t", "3")
    with pytest.raises(ThreadlogError) as ei:
        await c.abort(tid, first)  # the tool-call step is over
    assert ei.value.code == "conflict" and "already finished" in ei.value.message
    assert (await c.abort(tid, current)).value["stopped_by"] == "owner"
    with pytest.raises(ThreadlogError):
        await asyncio.wait_for(running, 10)
    assert [s for s, _ in await finals(rt, tid, current)] == ["failed"]


async def test_abort_of_a_finished_unknown_or_foreign_message_is_refused(
        rt: Runtime) -> None:
    scripted.script(rt.parts["model"], [Reply.text("done already")])
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    mid = (await c.generate_text("clerk", tid, "hi")).value["message_id"]
    before = await rt.store.last_seq()
    for client, message_id, code in ((c, mid, "conflict"), (c, "nope", "not_found"),
                                     (rt.client("bob"), mid, "forbidden")):
        with pytest.raises(ThreadlogError) as ei:
            await client.abort(tid, message_id)
        assert ei.value.code == code, ei.value
    assert await rt.store.last_seq() == before


async def test_orphaned_pending_message_is_finalized_as_aborted(rt: Runtime) -> None:
    """The generation's process died: nobody answers the signal, the message is left
    pending; the abort finalizes it (once: a re-sent abort replays)."""
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    saved = await c.save_message(tid, "assistant", [], status="pending")
    mid = saved.value["messages"][0]["message_id"]
    res = await c.abort(tid, mid, command_id="abort-1")
    assert res.value["stopped_by"] == "abort" and res.seq == await rt.store.last_seq()
    assert await finals(rt, tid, mid) == [("failed", "aborted")]
    assert await c.abort(tid, mid, command_id="abort-1") == res
    with pytest.raises(ThreadlogError) as ei:
        await c.abort(tid, mid)
    assert ei.value.code == "conflict"


async def test_owner_that_missed_the_signal_cannot_finalize_after_the_orphan_abort(
        rt: Runtime, process_b: Handlers) -> None:
    """B runs the generation but does not hear the signal (e.g. a partition): A finalizes
    the message as aborted; B's own final append then conflicts, B sees the message is no
    longer pending and stops with ``aborted``: one final state, B's usage recorded."""
    scripted.script(rt.parts["model"], [Reply.text("too late")])
    await process_b.abort_signals.stop()
    gen = process_b.generator
    entered, gate = asyncio.Event(), asyncio.Event()
    call_step = gen.call_step

    async def gated(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        await gate.wait()
        return await call_step(*args, **kwargs)

    gen.call_step = gated
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    running = generate_in(process_b, tid, "gen-late", None)
    await asyncio.wait_for(entered.wait(), 10)
    mid = derived_id("reply", "gen-late", "0")
    assert (await c.abort(tid, mid)).value["stopped_by"] == "abort"
    gate.set()
    with pytest.raises(ThreadlogError) as ei:
        await asyncio.wait_for(running, 10)
    assert ei.value.code == "aborted"
    assert await finals(rt, tid, mid) == [("failed", "aborted")]
    assert len(await rt.store.read(Aggregate("usage", "u1"))) == 1
