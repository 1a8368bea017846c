"""Generations are durable runs: SIGKILL a handler process at every persist point of a
3-step tool-loop generation, and a live worker finishes it; concurrency; a re-send after
the duplicate window answers from the thread's events without calling the model."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events import Aggregate, EventStore, MessageFinalized, derived_id, new_id
from handlers.agents.definition import Agent
from handlers.agents.durable import GenerationQueueConfig
from handlers.llm.call_settings import NO_BACKOFF, CallSettings
from handlers.llm.scripted import Reply, scripted
from tests.conftest import RuntimeFactory
from threadlog.embedded_nats import EmbeddedNats
from threadlog.runtime import Runtime, running
from threadlog.settings import Settings

from .gen_fault_worker import PERSIST_POINTS, TOOL_STEPS, agent

ROOT = Path(__file__).resolve().parents[3]
ACK_WAIT = 2.0
USER = "fi-user"


async def final_of(store: EventStore, thread_id: str, timeout: float = 60) -> MessageFinalized:
    """The generation's last ``message_finalized`` (bounded wait on the thread's events)."""
    async def watch() -> MessageFinalized:
        async for rec in store.watch(Aggregate.thread(thread_id)):
            ev = rec.event
            if isinstance(ev, MessageFinalized) and (ev.generation is not None
                                                      or ev.status == "failed"):
                return ev
        raise AssertionError("watch ended")

    return await asyncio.wait_for(watch(), timeout)


def spawn(nats_server: EmbeddedNats, events: str, out: Path, name: str, thread_id: str,
          **kill: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FI_URL": nats_server.url,
           "FI_CREDS": str(nats_server.service_creds or ""), "FI_EVENTS": events,
           "FI_DIR": str(out), "FI_AGENT": name, "FI_PROMPT": name, "FI_COMMAND": f"c-{name}",
           "FI_THREAD": thread_id, "FI_USER": USER, "FI_ACK_WAIT": str(ACK_WAIT),
           "PYTHONPATH": str(ROOT), **{f"FI_{k.upper()}": str(v) for k, v in kill.items()}}
    return subprocess.Popen([sys.executable, "-m", "tests.handlers.agents.gen_fault_worker"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


async def exited(proc: subprocess.Popen[bytes], timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        assert time.monotonic() < deadline, "handler process did not die"
        await asyncio.sleep(0.05)  # polling a child process's exit, not state
    return proc.returncode


def count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture
async def events_stream(nats_server: EmbeddedNats) -> AsyncIterator[str]:
    name = "EV" + new_id()[:10].upper()
    yield name
    conn = await nats_server.endpoint.connect()
    js = conn.jetstream()
    for stream in (name, f"{name}_GENERATIONS", f"KV_{name}_commands", f"KV_{name}_purges"):
        with contextlib.suppress(Exception):  # not created by this test
            await js.delete_stream(stream)
    await conn.close()


async def killed_workers(nats_server: EmbeddedNats, events_stream: str, tmp_path: Path,
                         scenarios: list[tuple[str, dict[str, int]]], **extra: int
                         ) -> tuple[dict[str, str], Settings]:
    """A thread per scenario, then a worker process per scenario that SIGKILLs itself
    where its scenario says (asserted); returns the threads and the recovery settings."""
    threads = {name: "t" + new_id()[:12] for name, _ in scenarios}
    settings = Settings(nats_urls=[nats_server.url], nats_creds=nats_server.service_creds,
                        data_dir=tmp_path / "recovery", events_stream=events_stream)
    async with running(settings) as rt:
        for tid in threads.values():
            await rt.client(USER).create_thread(thread_id=tid)
    procs = [spawn(nats_server, events_stream, tmp_path, name, threads[name], **extra, **kill)
             for name, kill in scenarios]
    codes = [await exited(p) for p in procs]
    assert codes == [-signal.SIGKILL] * len(procs), [
        p.stderr.read() for p in procs if p.stderr and p.returncode != -signal.SIGKILL]
    return threads, settings


async def test_sigkill_at_every_persist_point_then_a_live_worker_finishes_it(
        nats_server: EmbeddedNats, events_stream: str, tmp_path: Path) -> None:
    scenarios: list[tuple[str, dict[str, int]]] = (
        [(f"fip{p}", {"kill_at": p}) for p in range(len(PERSIST_POINTS))]
        + [(f"fim{n}", {"kill_model": n}) for n in range(1, TOOL_STEPS + 2)]
        + [(f"fit{n}", {"kill_tool": n}) for n in range(1, TOOL_STEPS + 1)])
    threads, settings = await killed_workers(nats_server, events_stream, tmp_path, scenarios)
    agents = [agent(name, tmp_path) for name, _ in scenarios]
    t0 = time.time()
    async with running(settings, agents=agents,
                       generation_queue=GenerationQueueConfig(ack_wait=ACK_WAIT)) as rt:
        finals = await asyncio.gather(*(final_of(rt.store, threads[n]) for n, _ in scenarios))
        took = time.time() - t0
        for (name, kill), final in zip(scenarios, finals, strict=True):
            await check_recovered(rt, name, kill, final, threads[name], tmp_path)
    takeovers = [float((tmp_path / f"{name}.model").stat().st_mtime) for name, _ in scenarios]
    print(f"all {len(scenarios)} generations finished {took:.2f} s after the recovery "
          f"worker started (ack_wait {ACK_WAIT} s); last model call at "
          f"{max(takeovers) - t0:.2f} s")
    assert took <= ACK_WAIT + 10


async def check_recovered(rt: Runtime, name: str, kill: dict[str, int],
                          final: MessageFinalized, tid: str, out: Path) -> None:
    assert final.status == "success", (name, final)
    recs = await rt.store.read(Aggregate.thread(tid))
    finals = [r.event for r in recs if isinstance(r.event, MessageFinalized)]
    ids = [f.message_id for f in finals]
    assert len(ids) == len(set(ids)) == TOOL_STEPS + 1, (name, ids)
    assert sum(1 for f in finals if f.generation is not None) == 1, name
    completed = [r for r in recs if r.type == "tool_call_completed"]
    assert len(completed) == TOOL_STEPS, name
    # A step's chain cut short after its first event is finished on resume: every
    # tool_call_requested is there, and a tool whose result was saved did not run again.
    requested = [r for r in recs if r.type == "tool_call_requested"]
    assert len(requested) == TOOL_STEPS, (name, len(requested))
    tools = count(out / f"{tid}.tool")
    assert TOOL_STEPS <= tools <= TOOL_STEPS + 1, (name, tools)
    if "kill_at" in kill and PERSIST_POINTS[kill["kill_at"]] in ("mid:s1", "mid:s3"):
        assert tools == TOOL_STEPS, (name, tools)
    if kill.get("kill_tool"):
        assert tools == TOOL_STEPS + 1, (name, tools)
    calls = count(out / f"{name}.model")
    usage = [r for r in await rt.store.read(Aggregate("usage", USER))
             if r.envelope.correlation_id == f"c-{name}"]
    in_flight = 1 if kill.get("kill_model") else 0
    assert len(usage) == calls - in_flight, (name, len(usage), calls)
    assert TOOL_STEPS + 1 <= calls <= TOOL_STEPS + 2, (name, calls)
    again = await rt.client(USER).generate_text(name, tid, name, command_id=f"c-{name}")
    assert again.value["text"] == f"done after {TOOL_STEPS} tools"
    assert again.value["steps"] == TOOL_STEPS + 1
    assert count(out / f"{name}.model") == calls, name


def slow_agent(name: str, latency_s: float) -> Agent:
    scripted.reset(name)
    scripted.configure(name, latency_s=latency_s,
                       responder=lambda req: Reply.text("slow answer"))
    return Agent(name=name, model=f"scripted/{name}",
                 call_settings=CallSettings(max_retries=0, backoff=NO_BACKOFF))


async def test_four_one_second_generations_run_concurrently(
        runtime_factory: RuntimeFactory) -> None:
    name = "slow" + new_id()[:8]
    async with runtime_factory(agents=[slow_agent(name, 1.0), slow_agent(name + "w", 0)]
                               ) as rt:
        c = rt.client("u1")
        tids = [(await c.create_thread()).value["thread_id"] for _ in range(5)]
        await c.generate_text(name + "w", tids.pop(), "warm up litellm")
        t0 = time.monotonic()
        res = await asyncio.gather(*(c.generate_text(name, t, "hi") for t in tids))
        took = time.monotonic() - t0
    print(f"4 generations of 1 s: {took:.2f} s")
    assert all(r.value["text"] == "slow answer" for r in res)
    assert took < 1.9, took


async def test_resend_after_the_duplicate_window_calls_no_model(
        runtime_factory: RuntimeFactory) -> None:
    name = "once" + new_id()[:8]
    async with runtime_factory(agents=[slow_agent(name, 0.0)], duplicate_window_s=1) as rt:
        c = rt.client("u1")
        tid = (await c.create_thread()).value["thread_id"]
        first = await c.generate_text(name, tid, "hi", command_id="gen-window")
        final = await final_of(rt.store, tid)
        assert final.message_id == derived_id("reply", "gen-window", "0")
        recs = await rt.store.read(Aggregate.thread(tid))
        boundary = recs[-1].envelope.occurred_at.timestamp() + 1.0  # the window's end
        await asyncio.sleep(max(0.0, boundary - time.time()) + 0.2)
        log = rt.handlers.runner.command_log
        assert log is not None
        await log.drain()
        from handlers.agents.commands import Generate

        probe = Generate(command_id="gen-window", user_id="u1", agent=name, thread_id=tid,
                         prompt="hi")
        deadline = time.monotonic() + 10  # the server expires KV entries on its timer
        while await log.lookup(probe) is not None:
            assert time.monotonic() < deadline, "the reply outlived the window"
            await asyncio.sleep(0.1)
        again = await c.generate_text(name, tid, "hi", command_id="gen-window")
    assert again.value == first.value
    assert len(scripted.requests(name)) == 1
