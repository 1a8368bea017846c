"""Generation slots when things go wrong: a process stopping while a generation waits
for a slot, a permit whose publish fails, a dispatcher that drops a cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats.errors
import pytest
from nats.aio.client import Client as NATS

from events import Aggregate, ThreadlogError, new_id
from events.consumer_limits import write_limit
from events.thread_events import MessageFinalized
from handlers.generation_limits.slots import CONSUMER, GenerationSlots, SlotsConfig, read_status
from handlers.llm.scripted import scripted
from tests.handlers.agents.test_durable_generation import final_of
from threadlog.embedded_nats import EmbeddedNats

from .test_generation_slots import USER, Meter, deployment, drop, slow_agent, threads


async def test_a_process_stopping_while_a_generation_waits_leaves_it_to_another_worker(
        nats_server: EmbeddedNats, tmp_path: Path) -> None:
    """Reproduction: the stopping process finalized the waiting generation as failed
    (``unavailable``) for good; a re-send answered that failure, nobody ran it."""
    agent = slow_agent("gl_stop", 0.05)
    name = "EV" + new_id()[:10].upper()
    meter, cid = Meter(), new_id()
    try:
        async with deployment(nats_server, tmp_path / "b", 1, None, [agent],
                              events=name) as (other,):
            async with deployment(nats_server, tmp_path / "a", 1, 0, [agent],
                                  events=name) as (rt,):
                meter.watch(rt)
                (tid,) = await threads(rt, 1)
                waiting = asyncio.ensure_future(rt.generate_text(agent.name, USER, tid, "x",
                                                                 command_id=cid))
                await meter.until(lambda: meter.arrived == 1)
            with pytest.raises(ThreadlogError) as ei:
                await asyncio.wait_for(waiting, 10)
            assert ei.value.code == "unavailable"
            final = await final_of(other.store, tid, timeout=20)  # the other worker ran it
            assert final.status == "success", final
            finals = [r.event for r in await other.store.read(Aggregate.thread(tid))
                      if isinstance(r.event, MessageFinalized)]
            assert len(finals) == 1
            again = await asyncio.wait_for(other.generate_text(agent.name, USER, tid, "x",
                                                               command_id=cid), 10)
            assert again.status == "success"
            assert len(scripted.requests(agent.name)) == 1  # one model call in all
    finally:
        await drop(nats_server, name)


@pytest.fixture
async def two_processes(nats_server: EmbeddedNats) -> AsyncIterator[
        tuple[NATS, GenerationSlots, GenerationSlots]]:
    """Two slot users (each its own connection) on one fresh permits stream."""
    ev = "SL" + new_id()[:10].upper()
    nc1, nc2 = await nats_server.endpoint.connect(), await nats_server.endpoint.connect()
    s1 = await GenerationSlots(nc1, ev, SlotsConfig(ack_wait=60.0)).start(2)
    s2 = await GenerationSlots(nc2, ev, SlotsConfig(ack_wait=60.0)).start(2)
    try:
        yield nc2, s1, s2
    finally:
        for s in (s1, s2):
            await s.stop()
        await nc1.jetstream().delete_stream(s1.layout.stream)
        await nc1.close()
        await nc2.close()


async def test_a_failed_permit_publish_takes_no_one_elses_permit(
        two_processes: tuple[NATS, GenerationSlots, GenerationSlots]) -> None:
    """Reproduction: the waiter got another entrant's permit, then its own publish
    failed; it acked (consumed) that permit as if its own had been published, leaving
    the other entrant without one, and raised the raw NATS error."""
    nc2, s1, s2 = two_processes
    await s1.js.publish(f"{s1.layout.prefix}.other", b"", stream=s1.layout.stream)

    async def failing_publish(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.3)  # confirmed after the permit reached the waiter
        raise nats.errors.NoRespondersError

    s2.js.publish = failing_publish  # type: ignore[method-assign]
    with pytest.raises(ThreadlogError) as ei:
        await asyncio.wait_for(s2.acquire("b"), 10)
    assert ei.value.code == "unavailable"
    await asyncio.wait_for(s2.settled(), 10)
    await nc2.flush()
    st = await read_status(s2.js, s2.layout)
    assert st is not None and st.waiting + st.running == 1, st  # the other's permit


async def test_stop_ends_when_the_dispatcher_drops_a_cancellation(
        two_processes: tuple[NATS, GenerationSlots, GenerationSlots]) -> None:
    """Python 3.11's wait_for (in nats-py's fetch) can drop a cancellation; stopping
    with a waiter used to wait for ever."""
    _, s1, _ = two_processes
    await write_limit(s1.js, s1.layout.stream, CONSUMER, 0)  # paused: no permit comes
    real = s1._psub.fetch
    dropped: list[bool] = []
    fetching = asyncio.Event()

    async def fetch(*args: Any, **kwargs: Any) -> Any:
        fetching.set()  # the dispatcher runs: a waiter is registered
        try:
            return await real(*args, **kwargs)
        except asyncio.CancelledError:
            if dropped:
                raise
            dropped.append(True)
            raise nats.errors.TimeoutError from None

    s1._psub.fetch = fetch
    waiter = asyncio.ensure_future(s1.acquire("w"))
    await asyncio.wait_for(fetching.wait(), 5)
    assert s1.waiting_here == 1
    await asyncio.wait_for(s1.stop(), 10)
    with pytest.raises(ThreadlogError):
        await asyncio.wait_for(waiter, 5)

