"""Generations with call-level and thread-level tools survive the death of their process.

A process running ``rt.generate_text(..., tools=[cbump])`` (or with ``cbump`` as a
thread-level tool) is SIGKILLed mid-generation; a worker whose agent lacks ``cbump``
finishes it with the tool its queue message names (``handlers.agents.tool_refs``). A
closure tool has no reference: the generation is failed ``worker_lost`` without calling
the model or the tool again. A worker that cannot import a reference does not run it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from events import Aggregate, MessageFinalized, ThreadlogError, new_id
from handlers.agents.durable import GenerationQueueConfig, agent_token
from handlers.agents.tool_refs import PROCESS_BOUND_HEADER, TOOLS_HEADER
from tests.conftest import ConnectAs, LogWatch, RuntimeFactory
from threadlog.embedded_nats import EmbeddedNats
from threadlog.runtime import Runtime, running
from threadlog.settings import Settings

from .call_tools_lib import TOOL_STEPS, agent, expected_text
from .test_durable_approval import queue_empty
from .test_durable_generation import (  # noqa: F401 (events_stream: a fixture)
    ACK_WAIT,
    USER,
    count,
    events_stream,
    exited,
    final_of,
)

ROOT = Path(__file__).resolve().parents[3]
Scenario = tuple[str, dict[str, str]]


@pytest.fixture(autouse=True)
def tool_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tools run in this process (the recovering worker) count in ``tmp_path``."""
    monkeypatch.setenv("FI_DIR", str(tmp_path))
    monkeypatch.delenv("FI_KILL_TOOL", raising=False)
    monkeypatch.delenv("FI_PROMPT", raising=False)


def spawn(nats_server: EmbeddedNats, events: str, out: Path, name: str, thread_id: str,
          mode: str, extra_path: Path | None = None, **env: str) -> subprocess.Popen[bytes]:
    path = str(ROOT) + (os.pathsep + str(extra_path) if extra_path else "")
    full = {**os.environ, "FI_URL": nats_server.url,
            "FI_CREDS": str(nats_server.service_creds or ""), "FI_EVENTS": events,
            "FI_DIR": str(out), "FI_AGENT": name, "FI_PROMPT": name,
            "FI_COMMAND": f"c-{name}", "FI_THREAD": thread_id, "FI_USER": USER,
            "FI_ACK_WAIT": str(ACK_WAIT), "FI_MODE": mode, "PYTHONPATH": path,
            **{f"FI_{k.upper()}": v for k, v in env.items()}}
    return subprocess.Popen([sys.executable, "-m", "tests.handlers.agents.call_tools_worker"],
                            cwd=ROOT, env=full, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


async def killed(nats_server: EmbeddedNats, events: str, tmp_path: Path, mode: str,
                 scenarios: list[Scenario], extra_path: Path | None = None
                 ) -> tuple[dict[str, str], Settings]:
    """A thread per scenario, then a worker process per scenario that SIGKILLs itself
    where its scenario says (asserted); the threads and the recovery settings."""
    threads = {name: "t" + new_id()[:12] for name, _ in scenarios}
    settings = Settings(nats_urls=[nats_server.url], nats_creds=nats_server.service_creds,
                        data_dir=tmp_path / "recovery", events_stream=events)
    async with running(settings) as rt:
        for tid in threads.values():
            await rt.client(USER).create_thread(thread_id=tid)
    procs = [spawn(nats_server, events, tmp_path, name, threads[name], mode, extra_path,
                   **kill) for name, kill in scenarios]
    codes = [await exited(p) for p in procs]
    assert codes == [-signal.SIGKILL] * len(procs), [
        p.stderr.read() for p in procs if p.stderr and p.returncode != -signal.SIGKILL]
    return threads, settings


def names(prefix: str, kills: list[dict[str, str]]) -> list[Scenario]:
    return [(f"{prefix}{i}{new_id()[:6].lower()}", k) for i, k in enumerate(kills)]


async def finals_of(rt: Runtime, tid: str) -> list[MessageFinalized]:
    return [r.event for r in await rt.store.read(Aggregate.thread(tid))
            if isinstance(r.event, MessageFinalized)]


async def check_finished(rt: Runtime, name: str, kill: dict[str, str], final: MessageFinalized,
                         tid: str, out: Path) -> None:
    """Finished by the live worker with the dead process's tool: the right text, one
    final message, every tool result saved once, no tool run again once recorded."""
    assert final.status == "success", (name, final)
    recs = await rt.store.read(Aggregate.thread(tid))
    finals = [r.event for r in recs if isinstance(r.event, MessageFinalized)]
    assert sum(1 for f in finals if f.generation is not None) == 1, name
    assert len([r for r in recs if r.type == "tool_call_completed"]) == TOOL_STEPS, name
    assert not [r for r in recs if r.type == "tool_call_failed"], name
    runs = count(out / f"{tid}.tool")
    assert runs == TOOL_STEPS + (1 if "kill_tool" in kill else 0), (name, runs)
    calls = count(out / f"{name}.model")
    assert TOOL_STEPS + 1 <= calls <= TOOL_STEPS + 2, (name, calls)
    again = await rt.client(USER).generate_text(name, tid, name, command_id=f"c-{name}")
    assert again.value["text"] == expected_text(), (name, again.value)
    assert count(out / f"{name}.model") == calls, name


async def finish_elsewhere(nats_server: EmbeddedNats, events: str, tmp_path: Path,
                           mode: str, kills: list[dict[str, str]]) -> None:
    scenarios = names(mode[:2], kills)
    threads, settings = await killed(nats_server, events, tmp_path, mode, scenarios)
    t0 = time.time()
    async with running(settings, agents=[agent(n, tmp_path) for n, _ in scenarios],
                       generation_queue=GenerationQueueConfig(ack_wait=ACK_WAIT)) as rt:
        finals = await asyncio.gather(*(final_of(rt.store, threads[n]) for n, _ in scenarios))
        took = time.time() - t0
        await queue_empty(rt, events)
        for (name, kill), final in zip(scenarios, finals, strict=True):
            text = "".join(getattr(c, "text", "") for c in final.content)
            assert text == expected_text(), (name, text)
            await check_finished(rt, name, kill, final, threads[name], tmp_path)
    print(f"{len(scenarios)} generations with {mode}-level tools finished {took:.2f} s after "
          f"the recovery worker started (ack_wait {ACK_WAIT} s)")
    assert took <= ACK_WAIT + 10


KILLS = [{"kill_model": "1"}, {"kill_point": "after:s1a"}, {"kill_tool": "1"}]
"""Inside the first model call; after the first tool call is recorded, before the tool
runs; inside the first tool run (its side effect done, its result not recorded)."""


async def test_a_call_level_tool_generation_is_finished_by_a_worker_without_that_tool(
        nats_server: EmbeddedNats, events_stream: str, tmp_path: Path) -> None:  # noqa: F811
    await finish_elsewhere(nats_server, events_stream, tmp_path, "call", KILLS)


async def test_a_thread_level_tool_generation_is_finished_by_a_worker_without_that_tool(
        nats_server: EmbeddedNats, events_stream: str, tmp_path: Path) -> None:  # noqa: F811
    await finish_elsewhere(nats_server, events_stream, tmp_path, "thread", KILLS[1:])


async def test_a_closure_tool_generation_fails_worker_lost_without_calling_anything(
        nats_server: EmbeddedNats, events_stream: str, tmp_path: Path) -> None:  # noqa: F811
    scenarios = names("cl", [{"kill_model": "1"}, {"kill_point": "after:s1a"}])
    threads, settings = await killed(nats_server, events_stream, tmp_path, "closure",
                                     scenarios)
    t0 = time.time()
    async with running(settings, agents=[agent(n, tmp_path) for n, _ in scenarios],
                       generation_queue=GenerationQueueConfig(ack_wait=ACK_WAIT)) as rt:
        finals = await asyncio.gather(*(final_of(rt.store, threads[n]) for n, _ in scenarios))
        took = time.time() - t0
        await queue_empty(rt, events_stream)
        for (name, kill), final in zip(scenarios, finals, strict=True):
            tid = threads[name]
            assert final.status == "failed" and final.error_code == "worker_lost", final
            assert "cbump" in (final.error or ""), final.error
            assert count(tmp_path / f"{name}.model") == 1, name  # the dead process's call
            assert count(tmp_path / f"{tid}.tool") == 0, name
            recs = await rt.store.read(Aggregate.thread(tid))
            assert len([f for f in await finals_of(rt, tid) if f.status == "failed"]) == 1
            assert not [r for r in recs if r.type == "tool_call_completed"], name
            if "kill_point" in kill:  # the recorded call answers an error; nothing ran
                failed = [r for r in recs if r.type == "tool_call_failed"]
                assert len(failed) == 1 and "WorkerLost" in str(failed[0].event), failed
            with pytest.raises(ThreadlogError) as err:
                await rt.client(USER).generate_text(name, tid, name, command_id=f"c-{name}")
            assert err.value.code == "worker_lost", err.value
            assert count(tmp_path / f"{name}.model") == 1, name
    assert took <= ACK_WAIT + 10, took


async def test_an_owner_that_misses_one_liveness_ping_keeps_its_generation(
        nats_server: EmbeddedNats, events_stream: str, tmp_path: Path) -> None:  # noqa: F811
    """A process-bound generation is failed ``worker_lost`` only when its owner misses
    the further pings too: an owner answering from its second ping on (a stalled event
    loop) keeps it; once no one answers, it is failed."""
    scenarios = names("st", [{"kill_model": "1"}])
    (name, _), = scenarios
    threads, settings = await killed(nats_server, events_stream, tmp_path, "closure",
                                     scenarios)
    tid, cid = threads[name], f"c-{name}"
    pings: list[float] = []
    answering, second = asyncio.Event(), asyncio.Event()
    async with running(settings) as plain:  # the stalled owner's stand-in
        async def owner(msg: Any) -> None:
            pings.append(time.monotonic())
            if len(pings) > 1 and not answering.is_set():
                await msg.respond(b"1")
                second.set()

        sub = await plain.nc.subscribe(f"sig.agent.gen.{events_stream}.{cid}", cb=owner)
        await plain.nc.flush()
        async with running(settings, agents=[agent(name, tmp_path)],
                           generation_queue=GenerationQueueConfig(ack_wait=ACK_WAIT)) as rt:
            await asyncio.wait_for(second.wait(), 30)  # the first ping went unanswered
            assert not [f for f in await finals_of(rt, tid)]  # kept: the owner answered
            answering.set()  # now it is gone for good
            await sub.unsubscribe()
            final = await final_of(rt.store, tid, timeout=ACK_WAIT * 4 + 10)
            assert (final.status, final.error_code) == ("failed", "worker_lost"), final
            assert count(tmp_path / f"{name}.model") == 1


EXT_TOOL = '''
from typing import Any

from handlers.llm.tools import ToolContext, tool
from tests.handlers.agents.call_tools_lib import Bump, count_run


@tool(name="cbump")
async def ext_bump(ctx: ToolContext[Any], args: Bump) -> str:
    """Count a side effect."""
    return count_run(ctx, args)
'''


async def killed_with_ext_tool(nats_server: EmbeddedNats, events: str, tmp_path: Path,
                               prefix: str) -> tuple[str, str, Settings, Path, str]:
    """A process running a generation with a tool of a module only it can import (under
    the returned directory) SIGKILLed inside the first model call: the agent's name, the
    thread, the recovery settings, the module's directory and name."""
    module = f"ext_tools_{prefix}_" + new_id()[:8].lower()
    extra = tmp_path / "ext"
    extra.mkdir()
    (extra / f"{module}.py").write_text(EXT_TOOL)
    scenarios = [(prefix + new_id()[:6].lower(), {"kill_model": "1", "ext_module": module})]
    (name, _), = scenarios
    threads, settings = await killed(nats_server, events, tmp_path, "ext", scenarios, extra)
    return name, threads[name], settings, extra, module


async def test_a_worker_that_cannot_import_a_tool_leaves_it_to_one_that_can(
        nats_server: EmbeddedNats, events_stream: str, tmp_path: Path) -> None:  # noqa: F811
    name, tid, settings, extra, module = await killed_with_ext_tool(
        nats_server, events_stream, tmp_path, "ex")
    seen = LogWatch()
    logging.getLogger("handlers.agents.durable").addHandler(seen)
    try:
        async with running(settings, agents=[agent(name, tmp_path)],
                           generation_queue=GenerationQueueConfig(ack_wait=ACK_WAIT)) as rt:
            # this worker lacks the module: it takes the message and gives it back
            await seen.wait_for("generation message failed in the worker", 1, timeout=30)
            refusal = next(r for r in seen.records  # one line, no traceback: expected
                           if "failed in the worker" in r.getMessage())
            assert module in refusal.getMessage() and not refusal.exc_info, refusal
            assert rt.handlers.generator.queue is not None
            await rt.handlers.generator.queue.stop()  # now only the capable worker fetches
            info = await rt.nc.jetstream().stream_info(f"{events_stream}_GENERATIONS")
            assert info.state.messages == 1
            assert count(tmp_path / f"{name}.model") == 1  # not run here
            state = await rt.handlers.runner.states.refresh(tid)
            assert [m.status for m in state.messages.values() if m.role == "assistant"] == [
                "pending"]
            capable = spawn(nats_server, events_stream, tmp_path, name, tid, "serve", extra)
            try:
                final = await final_of(rt.store, tid, timeout=60)
                await queue_empty(rt, events_stream)  # acked by the capable worker
            finally:
                capable.kill()
                await exited(capable)
            assert final.status == "success", final
            assert "".join(getattr(c, "text", "") for c in final.content) == expected_text()
            assert count(tmp_path / f"{tid}.tool") == TOOL_STEPS
    finally:
        logging.getLogger("handlers.agents.durable").removeHandler(seen)


async def test_a_tool_no_worker_can_import_fails_the_generation_after_n_deliveries(
        nats_server: EmbeddedNats, events_stream: str, tmp_path: Path) -> None:  # noqa: F811
    """Never left pending for ever: once every delivery found no worker able to import
    the tool (here 2), the generation is failed ``tool_unavailable``, calling neither the
    model nor the tool again; a re-send answers that failure."""
    name, tid, settings, _, _ = await killed_with_ext_tool(nats_server, events_stream,
                                                           tmp_path, "gn")
    async with running(settings, agents=[agent(name, tmp_path)],
                       generation_queue=GenerationQueueConfig(
                           ack_wait=ACK_WAIT, tools_unavailable_after=2)) as rt:
        final = await final_of(rt.store, tid, timeout=60)
        assert (final.status, final.error_code) == ("failed", "tool_unavailable"), final
        assert count(tmp_path / f"{name}.model") == 1  # only the dead process's call
        assert count(tmp_path / f"{tid}.tool") == 0
        assert len(await finals_of(rt, tid)) == 1
        await queue_empty(rt, events_stream)
        with pytest.raises(ThreadlogError) as ei:
            await rt.client(USER).generate_text(name, tid, name, command_id=f"c-{name}")
        assert ei.value.code == "tool_unavailable"


@pytest.mark.parametrize("role", ["user", "app", "operator"])
async def test_no_role_but_the_service_queues_a_generation_or_names_its_tools(
        runtime_factory: RuntimeFactory, connect_as: ConnectAs, role: str) -> None:
    """Tool references are imported only from ``gen.>`` queue messages: another role's
    forged message (naming a module to import) is refused by the server."""
    name = "sec" + new_id()[:6].lower()
    async with runtime_factory(agents=[agent(name, Path("."))]) as rt:
        conn = await connect_as(role, f"{role}3")
        stream = rt.store.stream
        subject = f"gen.{stream}.{agent_token(name)}.forged{new_id()[:6]}"
        body = json.dumps({"command_id": "forged", "user_id": "bob", "agent": name,
                           "thread_id": "t1", "prompt": "hi"}).encode()
        await conn.nc.publish(subject, body, headers={
            TOOLS_HEADER: json.dumps([{"name": "cbump", "ref": "os:system"}]),
            PROCESS_BOUND_HEADER: "x"})
        await conn.violation(subject)
        info = await rt.nc.jetstream().stream_info(f"{stream}_GENERATIONS")
        assert info.state.messages == 0 and info.state.last_seq == 0
