"""Approval continuations are durable runs: SIGKILL the process that took the approval
at every persist point of the continuation (the decision, the approved tool's results,
the next tool step, the final message), inside its model calls and its tools; a live
worker finishes it with no client action, and a re-sent approval answers the recorded
result without calling the model."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from events import (
    Aggregate,
    MessageFinalized,
    ToolApprovalRequested,
    derived_id,
    new_id,
)
from handlers.agents.approvals import decide_approval
from handlers.agents.commands import DecideApproval
from handlers.agents.definition import Agent
from handlers.agents.durable import GenerationQueueConfig
from handlers.llm.call_settings import NO_BACKOFF, CallSettings
from handlers.llm.scripted import Reply, scripted
from handlers.llm.scripted.replies import ScriptedToolCall
from handlers.llm.tools import ToolContext, tool
from tests.conftest import RuntimeFactory
from threadlog.embedded_nats import EmbeddedNats
from threadlog.runtime import Runtime, running

from .gen_fault_worker import APPROVAL_POINTS, TOOL_STEPS, approval_agent
from .test_durable_generation import (  # noqa: F401 (events_stream: a fixture)
    ACK_WAIT,
    USER,
    count,
    events_stream,
    exited,
    final_of,
    killed_workers,
    spawn,
)

UNDECIDED = "before:decision"
"""Killed before the decision is appended: the queued continuation is dropped and the
generation still awaits the approval (the client's re-send then finishes it)."""
TOOLS_AGAIN = ("before:s1", "before:s3")
"""Killed after a tool ran, before its result was saved: that tool runs again."""


async def queue_empty(rt: Runtime, events: str, timeout: float = 30) -> None:
    """Bounded wait until no generation message is left in the work queue: the queue is
    looked at again on every ack its consumers send (``$JS.ACK.<stream>.>``)."""
    js = rt.nc.jetstream()
    stream = f"{events}_GENERATIONS"
    acked = asyncio.Event()

    async def on_ack(_msg: Any) -> None:
        acked.set()

    sub = await rt.nc.subscribe(f"$JS.ACK.{stream}.>", cb=on_ack)
    try:
        async with asyncio.timeout(timeout):
            while True:
                acked.clear()
                if not (await js.stream_info(stream)).state.messages:
                    return
                await acked.wait()
    except TimeoutError:
        raise AssertionError("generation messages left in the queue") from None
    finally:
        await sub.unsubscribe()


async def test_sigkill_during_an_approval_continuation_then_a_live_worker_finishes_it(
        nats_server: EmbeddedNats, events_stream: str,  # noqa: F811
        tmp_path: Path) -> None:
    scenarios: list[tuple[str, dict[str, int]]] = (
        [(f"fia{p}", {"kill_at": p}) for p in range(len(APPROVAL_POINTS))]
        + [(f"fiam{n}", {"kill_model": n}) for n in range(2, TOOL_STEPS + 2)]
        + [(f"fiat{n}", {"kill_tool": n}) for n in range(1, TOOL_STEPS + 1)])
    threads, settings = await killed_workers(nats_server, events_stream, tmp_path, scenarios,
                                             approval=1)
    undecided = {n for n, k in scenarios
                 if "kill_at" in k and APPROVAL_POINTS[k["kill_at"]] == UNDECIDED}
    agents = [approval_agent(name, tmp_path) for name, _ in scenarios]
    t0 = time.time()
    async with running(settings, agents=agents,
                       generation_queue=GenerationQueueConfig(ack_wait=ACK_WAIT)) as rt:
        finals = await asyncio.gather(*(final_of(rt.store, threads[n])
                                        for n, _ in scenarios if n not in undecided))
        took = time.time() - t0
        await queue_empty(rt, events_stream)
        done = [(n, k) for n, k in scenarios if n not in undecided]
        for (name, kill), final in zip(done, finals, strict=True):
            await check_recovered(rt, name, kill, final, threads[name], tmp_path)
        for name in undecided:
            await check_undecided(rt, name, threads[name], tmp_path)
    print(f"{len(done)} approval continuations finished {took:.2f} s after the recovery "
          f"worker started (ack_wait {ACK_WAIT} s)")
    assert took <= ACK_WAIT + 10


async def _approval_call(rt: Runtime, tid: str) -> str:
    recs = await rt.store.read(Aggregate.thread(tid))
    return next(r.event.tool_call_id for r in recs
                if isinstance(r.event, ToolApprovalRequested))


async def check_recovered(rt: Runtime, name: str, kill: dict[str, int],
                          final: MessageFinalized, tid: str, out: Path) -> None:
    k = f"c-{name}"
    assert final.status == "success", (name, final)
    assert final.generation is not None and final.generation["steps"] == TOOL_STEPS
    recs = await rt.store.read(Aggregate.thread(tid))
    finals = [r.event for r in recs if isinstance(r.event, MessageFinalized)]
    ids = [f.message_id for f in finals]
    # the paused step, the continuation's tool step, its final message: each once
    assert len(ids) == len(set(ids)) == TOOL_STEPS + 1, (name, ids)
    assert sum(1 for f in finals if f.generation is not None) == 1, name
    assert derived_id("reply", k, "0") in ids, name
    assert len([r for r in recs if r.type == "tool_call_completed"]) == TOOL_STEPS, name
    assert len([r for r in recs if r.type == "tool_call_requested"]) == TOOL_STEPS, name
    assert len([r for r in recs if r.type == "tool_approval_decided"]) == 1, name
    tools = count(out / f"{tid}.tool")
    point = APPROVAL_POINTS[kill["kill_at"]] if "kill_at" in kill else None
    again = 1 if point in TOOLS_AGAIN or kill.get("kill_tool") else 0
    assert tools == TOOL_STEPS + again, (name, tools)
    calls = count(out / f"{name}.model")
    usage = [r for r in await rt.store.read(Aggregate("usage", USER))
             if r.envelope.correlation_id in (k, k + "g")]
    in_flight = 1 if kill.get("kill_model") else 0
    assert len(usage) == calls - in_flight, (name, len(usage), calls)
    assert TOOL_STEPS + 1 <= calls <= TOOL_STEPS + 2, (name, calls)
    resent = await rt.client(USER).decide_approval(tid, await _approval_call(rt, tid), True,
                                                   command_id=k)
    assert resent.value["generation"]["text"] == f"done after {TOOL_STEPS} tools", name
    assert resent.value["generation"]["message_id"] == final.message_id, name
    assert count(out / f"{name}.model") == calls, name


async def check_undecided(rt: Runtime, name: str, tid: str, out: Path) -> None:
    """The decision never reached the log: the queued continuation was dropped, the
    generation still awaits the approval; the client's re-send finishes it."""
    recs = await rt.store.read(Aggregate.thread(tid))
    assert not [r for r in recs if r.type == "tool_approval_decided"], name
    assert count(out / f"{tid}.tool") == 0, name
    resent = await rt.client(USER).decide_approval(tid, await _approval_call(rt, tid), True,
                                                   command_id=f"c-{name}")
    assert resent.value["generation"]["text"] == f"done after {TOOL_STEPS} tools", name
    assert count(out / f"{tid}.tool") == TOOL_STEPS, name
    assert count(out / f"{name}.model") == TOOL_STEPS + 1, name


RAN: list[int] = []


class Amount(BaseModel):
    n: int


@tool(needs_approval=True)
async def pay(ctx: ToolContext[Any], args: Amount) -> str:
    """Pay, once a human approved it."""
    RAN.append(args.n)
    return f"paid {args.n}"


async def test_two_approvals_in_one_step_one_continuation_resent_answers_the_record(
        runtime_factory: RuntimeFactory) -> None:
    """The first decision waits for the second; the second (a denial) continues the
    generation once; re-sending either answers without running anything again."""
    model = "ap" + new_id()[:8]
    scripted.reset(model)
    scripted.script(model, [
        Reply.parallel_tool_calls([ScriptedToolCall("pay", {"n": 1}, "call-1"),
                                   ScriptedToolCall("pay", {"n": 2}, "call-2")]),
        Reply.text("paid one of two")])
    agent = Agent(name="payer" + model, model=f"scripted/{model}", tools=[pay],
                  call_settings=CallSettings(max_retries=0, backoff=NO_BACKOFF))
    RAN.clear()
    async with runtime_factory(agents=[agent]) as rt:
        c = rt.client("u1")
        tid = (await c.create_thread()).value["thread_id"]
        paused = (await c.generate_text(agent.name, tid, "pay both")).value
        assert sorted(paused["awaiting_approval"]) == ["call-1", "call-2"]
        first = (await c.decide_approval(tid, "call-1", True, command_id="dec-1")).value
        assert first["waiting_for"] == ["call-2"] and "generation" not in first
        second = (await c.decide_approval(tid, "call-2", False, reason="no",
                                          command_id="dec-2")).value
        assert second["generation"]["text"] == "paid one of two"
        assert RAN == [1]
        recs = await rt.store.read(Aggregate.thread(tid))
        assert [r.type for r in recs].count("tool_call_failed") == 1  # the denied call
        assert [r.type for r in recs].count("message_finalized") == 2
        again = (await c.decide_approval(tid, "call-2", False, reason="no",
                                         command_id="dec-2")).value
        assert again["generation"] == second["generation"]  # the command log's reply
        # past the command log (in-process, no log): from the thread's events
        resent = await decide_approval(rt.handlers.generator, DecideApproval(
            command_id="dec-2", user_id="u1", thread_id=tid, tool_call_id="call-2",
            approved=False, reason="no"))
        assert resent["generation"]["text"] == "paid one of two"
        assert resent["generation"]["message_id"] == second["generation"]["message_id"]
        assert RAN == [1] and len(scripted.requests(model)) == 2
