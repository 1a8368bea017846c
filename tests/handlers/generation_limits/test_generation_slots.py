"""The generation limit (``handlers.generation_limits``) on a real server with auth:
never more model calls in flight than the limit across runtimes, live changes, pause,
a SIGKILLed holder's slot coming back, waits given up leaking nothing, operators only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nats.errors
import pytest
from typer.testing import CliRunner

from events import Aggregate, MessageFinalized, ThreadlogError, derived_id, new_id
from events.replies import Reply
from handlers.agents.commands import Generate
from handlers.agents.definition import Agent
from handlers.agents.durable import GenerationQueueConfig
from handlers.client import Client
from handlers.generation_limits import GenerationLimits, SlotsConfig, subjects
from handlers.llm.call_settings import NO_BACKOFF, CallSettings
from handlers.llm.scripted import scripted
from tests.conftest import ConnectAs, RoleConnection, RuntimeFactory
from threadlog.cli import app as cli_app
from threadlog.embedded_nats import EmbeddedNats
from threadlog.runtime import Runtime, running
from threadlog.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
USER = "gl-user"
ACK_WAIT = 2.0


class Meter:
    """Model calls in flight across runtimes (``call_step`` wrapped) and generations that
    reached the admission, with an event to wait on (no polling)."""

    def __init__(self) -> None:
        self.now = self.peak = self.calls = self.arrived = 0
        self._changed = asyncio.Event()

    def watch(self, rt: Runtime) -> None:
        gen = rt.handlers.generator
        inner_call, inner_admission = gen.call_step, gen.admission
        assert inner_admission is not None, "the limit is on"

        async def call_step(*args: Any, **kwargs: Any) -> Any:
            self.now += 1
            self.calls += 1
            self.peak = max(self.peak, self.now)
            self._changed.set()
            try:
                return await inner_call(*args, **kwargs)
            finally:
                self.now -= 1
                self._changed.set()

        def admission(cmd: Generate, abort: asyncio.Event) -> Any:
            self.arrived += 1
            self._changed.set()
            return inner_admission(cmd, abort)

        gen.call_step = call_step
        gen.admission = admission

    async def until(self, pred: Callable[[], bool], timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not pred():
                self._changed.clear()
                await self._changed.wait()


def slow_agent(name: str, latency_s: float) -> Agent:
    scripted.reset(name)
    scripted.configure(name, latency_s=latency_s)
    return Agent(name=name, model=f"scripted/{name}",
                 call_settings=CallSettings(max_retries=0, backoff=NO_BACKOFF))


@contextlib.asynccontextmanager
async def deployment(nats_server: EmbeddedNats, tmp_path: Path, n: int, limit: int | None,
                     agents: list[Agent], *, ack_wait: float = ACK_WAIT,
                     events: str | None = None) -> AsyncIterator[list[Runtime]]:
    """``n`` runtimes (each its own connections) on one EVENTS stream, limit ``limit``."""
    name = events or "EV" + new_id()[:10].upper()
    try:
        async with contextlib.AsyncExitStack() as stack:
            rts = []
            for i in range(n):
                settings = Settings(nats_urls=[nats_server.url],
                                    nats_creds=nats_server.service_creds,
                                    data_dir=tmp_path / f"rt{i}", events_stream=name,
                                    generation_parallelism=limit)
                rts.append(await stack.enter_async_context(running(
                    settings, agents=agents,
                    generation_queue=GenerationQueueConfig(ack_wait=ack_wait),
                    generation_slots=SlotsConfig(ack_wait=ack_wait, fetch_timeout=0.5))))
            yield rts
    finally:
        if events is None:
            await drop(nats_server, name)


async def drop(nats_server: EmbeddedNats, name: str) -> None:
    conn = await nats_server.endpoint.connect()
    js = conn.jetstream()
    for stream in (name, f"{name}_GENERATIONS", f"{name}_GENSLOTS"):
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
    for bucket in ("commands", "purges", "rate_limits"):
        with contextlib.suppress(Exception):
            await js.delete_key_value(f"{name}_{bucket}")
    await conn.close()


async def ops(conn: RoleConnection, subject: str, body: dict[str, Any]) -> Reply:
    msg = await conn.nc.request(subject, json.dumps(body).encode(), timeout=5)
    return Reply.model_validate_json(msg.data)


async def set_limit(conn: RoleConnection, n: int) -> dict[str, Any]:
    result: dict[str, Any] = (await ops(conn, subjects.SET_GENERATION_LIMIT,
                                        {"max_parallelism": n})).unwrap()
    return result


async def threads(rt: Runtime, n: int) -> list[str]:
    return [(await rt.client(USER).create_thread()).value["thread_id"] for _ in range(n)]


async def test_two_runtimes_never_run_more_model_calls_than_the_limit_and_a_raise_lets_more_in(
        nats_server: EmbeddedNats, tmp_path: Path, connect_as: ConnectAs) -> None:
    agent = slow_agent("gl_pair", 0.8)
    meter = Meter()
    op = await connect_as("operator", "gl-op1")
    async with deployment(nats_server, tmp_path, 2, 2, [agent]) as rts:
        for rt in rts:
            meter.watch(rt)
        tids = await threads(rts[0], 12)
        first = [rts[i % 2].generate_text(agent.name, USER, tid, f"p{i}")
                 for i, tid in enumerate(tids[:6])]
        done = await asyncio.wait_for(asyncio.gather(*first), 30)
        assert [r.status for r in done] == ["success"] * 6
        assert meter.calls == 6 and meter.peak == 2, (meter.calls, meter.peak)

        # Live raise: 6 more wait behind 2 running; at 4, 4 run at once.
        meter.peak = 0
        second = [asyncio.ensure_future(rts[i % 2].generate_text(agent.name, USER, tid, "q"))
                  for i, tid in enumerate(tids[6:])]
        await meter.until(lambda: meter.arrived == 12 and meter.now == 2)
        status = await set_limit(op, 4)
        assert status["max_parallelism"] == 4 and not status["paused"]
        await meter.until(lambda: meter.now == 4)
        done = await asyncio.wait_for(asyncio.gather(*second), 30)
        assert [r.status for r in done] == ["success"] * 6
        assert meter.peak == 4, meter.peak
        for rt in rts:  # the acks of the permits reached the server
            await rt.nc.flush()
        got = (await ops(op, subjects.GET_GENERATION_LIMIT, {})).unwrap()
        assert (got["max_parallelism"], got["running"], got["waiting"]) == (4, 0, 0), got


async def test_zero_pauses_new_generations_while_running_ones_finish(
        nats_server: EmbeddedNats, tmp_path: Path, connect_as: ConnectAs) -> None:
    agent = slow_agent("gl_pause", 1.0)
    meter = Meter()
    op = await connect_as("operator", "gl-op2")
    async with deployment(nats_server, tmp_path, 1, 2, [agent]) as (rt,):
        meter.watch(rt)
        tids = await threads(rt, 4)
        running_ = [asyncio.ensure_future(rt.generate_text(agent.name, USER, t, "r"))
                    for t in tids[:2]]
        await meter.until(lambda: meter.now == 2)
        assert (await set_limit(op, 0))["paused"] is True
        paused = [asyncio.ensure_future(rt.generate_text(agent.name, USER, t, "p"))
                  for t in tids[2:]]
        await meter.until(lambda: meter.arrived == 4)
        assert [r.status for r in await asyncio.wait_for(asyncio.gather(*running_), 20)] \
            == ["success"] * 2
        with pytest.raises(TimeoutError):  # paused: no model call starts
            await meter.until(lambda: meter.calls > 2, timeout=1.5)
        await rt.nc.flush()
        got = (await ops(op, subjects.GET_GENERATION_LIMIT, {})).unwrap()
        assert (got["max_parallelism"], got["paused"], got["running"], got["waiting"]) \
            == (0, True, 0, 2), got
        assert (await set_limit(op, 2))["paused"] is False
        assert [r.status for r in await asyncio.wait_for(asyncio.gather(*paused), 20)] \
            == ["success"] * 2
        assert meter.peak == 2 and meter.calls == 4


async def one_slot_held(rt: Runtime, agent: Agent, meter: Meter
                        ) -> tuple[Client, asyncio.Future[Any], str, str]:
    """With limit 1 (ack_wait 60 s: a leaked slot would block the later generation for a
    minute): a generation holding the slot, and two more threads (the waiter's, the
    later one's)."""
    meter.watch(rt)
    ta, tb, tc = await threads(rt, 3)
    holder = asyncio.ensure_future(rt.generate_text(agent.name, USER, ta, "a"))
    await meter.until(lambda: meter.now == 1)
    return rt.client(USER), holder, tb, tc


async def failed_without_model_or_leak(rt: Runtime, agent: Agent, holder: asyncio.Future[Any],
                                       tb: str, tc: str, code: str) -> None:
    """The waiter on ``tb`` failed with ``code`` before any model call; the holder still
    finishes; a later generation on ``tc`` runs at once: no slot leaked."""
    assert not holder.done()
    assert len(scripted.requests(agent.name)) == 1  # the waiter called no model
    finals = [r.event for r in await rt.store.read(Aggregate.thread(tb))
              if isinstance(r.event, MessageFinalized)]
    assert [(f.status, f.error_code) for f in finals] == [("failed", code)], finals
    assert (await asyncio.wait_for(holder, 10)).status == "success"
    t0 = time.monotonic()
    res = await asyncio.wait_for(rt.generate_text(agent.name, USER, tc, "c"), 10)
    assert res.status == "success" and time.monotonic() - t0 < 8
    slots = rt.parts["generation_slots"]
    assert slots.held_here == 0 and slots.waiting_here == 0


@pytest.mark.parametrize("stream", [True, False])
async def test_an_aborted_waiting_generation_calls_no_model_and_leaks_no_slot(
        nats_server: EmbeddedNats, tmp_path: Path, stream: bool) -> None:
    agent = slow_agent("gl_abort", 1.5)
    meter = Meter()
    async with deployment(nats_server, tmp_path, 1, 1, [agent], ack_wait=60.0) as (rt,):
        client, holder, tb, tc = await one_slot_held(rt, agent, meter)
        cb = new_id()
        aborted = asyncio.ensure_future(client.generate_text(agent.name, tb, "b",
                                                             command_id=cb, stream=stream))
        await meter.until(lambda: meter.arrived == 2)
        stopped = await client.abort(tb, derived_id("reply", cb, "0"))
        assert stopped.value["stopped_by"] == "owner"
        with pytest.raises(ThreadlogError) as ei:
            await asyncio.wait_for(aborted, 10)
        assert ei.value.code == "aborted", ei.value
        await failed_without_model_or_leak(rt, agent, holder, tb, tc, "aborted")


async def test_a_wait_for_a_slot_counts_against_the_generation_deadline(
        nats_server: EmbeddedNats, tmp_path: Path) -> None:
    """The wait is part of the generation: past ``deadline_s`` it fails with ``timeout``
    before any model call, and its slot is not leaked."""
    agent = slow_agent("gl_deadline", 1.5)
    meter = Meter()
    async with deployment(nats_server, tmp_path, 1, 1, [agent], ack_wait=60.0) as (rt,):
        client, holder, tb, tc = await one_slot_held(rt, agent, meter)
        with pytest.raises(ThreadlogError) as ei:
            await asyncio.wait_for(client.generate_text(agent.name, tb, "b", deadline_s=0.3),
                                   10)
        assert ei.value.code == "timeout", ei.value
        await failed_without_model_or_leak(rt, agent, holder, tb, tc, "timeout")


async def test_waits_cancelled_or_timed_out_leak_no_slot(nats_server: EmbeddedNats,
                                                         tmp_path: Path) -> None:
    async with deployment(nats_server, tmp_path, 1, 1, [], ack_wait=60.0) as (rt,):
        slots = rt.parts["generation_slots"]
        async with slots.slot("holder") as got:
            assert got
            async with slots.slot("late", timeout=0.3) as late:
                assert late is False  # the deadline passed: holding nothing
            waiter = asyncio.ensure_future(slots.acquire("cancelled"))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiter), 0.3)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert slots.waiting_here == 0
        for n in range(3):  # ack_wait 60 s: a lost permit would block here
            async with asyncio.timeout(5):
                async with slots.slot(f"after{n}") as again:
                    assert again
        await asyncio.wait_for(slots.settled(), 10)  # the 2 extra permits consumed
        status = await GenerationLimits(rt.store.js, rt.store.stream, slots).status()
        assert (status["running"], status["waiting"]) == (0, 0), status


async def test_a_sigkilled_holder_gives_its_slot_back_and_its_generation_finishes_elsewhere(
        nats_server: EmbeddedNats, tmp_path: Path) -> None:
    agent = slow_agent("gl_kill", 0.2)
    meter = Meter()
    events = "EV" + new_id()[:10].upper()
    try:
        async with deployment(nats_server, tmp_path, 1, 1, [agent], events=events) as (rt,):
            meter.watch(rt)
            t_killed, t_other = await threads(rt, 2)
            env = {**os.environ, "GL_URL": nats_server.url,
                   "GL_CREDS": str(nats_server.service_creds or ""), "GL_EVENTS": events,
                   "GL_DIR": str(tmp_path / "holder"), "GL_AGENT": agent.name,
                   "GL_COMMAND": "c-killed", "GL_THREAD": t_killed, "GL_USER": USER,
                   "GL_LIMIT": "1", "GL_ACK_WAIT": str(ACK_WAIT), "PYTHONPATH": str(ROOT)}
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.handlers.generation_limits.slot_holder_worker"],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                text=True)
            try:
                assert proc.stdout is not None
                line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
                assert line.strip() == "holding", line
                other = asyncio.ensure_future(rt.generate_text(agent.name, USER, t_other, "o"))
                await meter.until(lambda: meter.arrived == 1)
                with pytest.raises(TimeoutError):  # the dead-to-be process holds the slot
                    await meter.until(lambda: meter.calls > 0, timeout=0.5)
                proc.send_signal(signal.SIGKILL)
                killed_at = time.monotonic()
                await asyncio.to_thread(proc.wait, 30)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            assert (await asyncio.wait_for(other, ACK_WAIT + 15)).status == "success"
            assert time.monotonic() - killed_at < ACK_WAIT + 10

            async def final() -> MessageFinalized:
                async for rec in rt.store.watch(Aggregate.thread(t_killed)):
                    if isinstance(rec.event, MessageFinalized):
                        return rec.event
                raise AssertionError("watch ended")

            ev = await asyncio.wait_for(final(), 3 * ACK_WAIT + 20)
            assert ev.status == "success", ev
            assert meter.peak == 1 and meter.calls == 2
    finally:
        await drop(nats_server, events)


async def test_limit_ops_validate_strictly_and_answer_where_the_limit_is_off(
        nats_server: EmbeddedNats, tmp_path: Path, connect_as: ConnectAs,
        runtime_factory: RuntimeFactory) -> None:
    op = await connect_as("operator", "gl-op3")
    async with deployment(nats_server, tmp_path, 1, 3, []):
        for body in ({"max_parallelism": -1}, {"max_parallelism": "3"},
                     {"max_parallelism": 3.0}, {"max_parallelism": True}, {},
                     {"max_parallelism": 3, "extra": 1}, {"max_parallelism": 100_001}):
            reply = await ops(op, subjects.SET_GENERATION_LIMIT, body)
            assert reply.error is not None and reply.error.code == "invalid_input", body
        reply = await ops(op, subjects.GET_GENERATION_LIMIT, {"x": 1})
        assert reply.error is not None and reply.error.code == "invalid_input"
        got = (await ops(op, subjects.GET_GENERATION_LIMIT, {})).unwrap()
        assert got["enabled"] is True and got["max_parallelism"] == 3
    async with runtime_factory():
        assert (await ops(op, subjects.GET_GENERATION_LIMIT, {})).unwrap() == {
            "enabled": False, "max_parallelism": None}
        reply = await ops(op, subjects.SET_GENERATION_LIMIT, {"max_parallelism": 2})
        assert reply.error is not None and reply.error.code == "not_enabled"


async def test_the_cli_shows_and_sets_the_limit_in_one_line(
        nats_server: EmbeddedNats, tmp_path: Path, runtime_factory: RuntimeFactory) -> None:
    creds = nats_server.endpoint_for("operator", "gl-cli", tmp_path / "op.creds").creds
    args = ["--nats-url", nats_server.url, "--creds", str(creds)]

    def cli(*argv: str) -> Any:
        return CliRunner().invoke(cli_app, ["generations", "limit", *argv, *args])

    async with deployment(nats_server, tmp_path, 1, 5, []):
        res = await asyncio.to_thread(cli, "3")
        assert res.exit_code == 0 and res.output.strip() == \
            "limit 3; running 0; waiting 0", res.output
        res = await asyncio.to_thread(cli, "0")
        assert res.output.strip().startswith("limit paused (0)"), res.output
        res = await asyncio.to_thread(cli, "--json")
        assert json.loads(res.output)["paused"] is True
    async with runtime_factory():
        res = await asyncio.to_thread(cli, "2")
        assert res.exit_code == 1 and res.output.startswith("error: [not_enabled]"), \
            res.output
        assert "Traceback" not in res.output


@pytest.mark.parametrize("role", ["user", "app"])
async def test_users_and_apps_cannot_reach_the_limit_or_the_slots(
        nats_server: EmbeddedNats, tmp_path: Path, connect_as: ConnectAs, role: str) -> None:
    events = "EV" + new_id()[:10].upper()
    try:
        async with deployment(nats_server, tmp_path, 1, 1, [], events=events):
            conn = await connect_as(role, f"gl-{role}")
            for subject, body in ((subjects.SET_GENERATION_LIMIT, {"max_parallelism": 100}),
                                  (subjects.GET_GENERATION_LIMIT, {}),
                                  (f"$JS.API.CONSUMER.MSG.NEXT.{events}_GENSLOTS.slots",
                                   {"batch": 1}),
                                  (f"$JS.API.CONSUMER.INFO.{events}_GENSLOTS.slots", {})):
                with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
                    await conn.nc.request(subject, json.dumps(body).encode(), timeout=0.5)
                await conn.violation(subject)
            await conn.nc.publish(f"genslot.{events}.forged", b"")
            await conn.violation(f"genslot.{events}.forged")
            info = await (await nats_server.endpoint.connect()).jetstream().stream_info(
                f"{events}_GENSLOTS")
            assert info.state.messages == 0
    finally:
        await drop(nats_server, events)
