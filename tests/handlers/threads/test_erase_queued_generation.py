"""Deleting a thread erases the queue message of its generation still running: the
message holds the generate command with its prompt, and the work queue only deletes it
(no erase) when the generation is acked. ``nats_server`` is this test's own, writing
through on every ack (see ``test_erasure_nats``)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from uuid import uuid4

from events import Aggregate, MessageSaved
from handlers.agents.definition import Agent
from handlers.llm.call_settings import CallSettings
from handlers.llm.scripted import Reply, scripted
from threadlog.embedded_nats import EmbeddedNats
from threadlog.runtime import running
from threadlog.settings import Settings

from .test_erasure_nats import files_with, mark


async def test_a_running_generation_of_a_deleted_thread_leaves_no_prompt_on_disk(
        fresh_nats_server: EmbeddedNats, tmp_path: Path) -> None:
    nats_server = fresh_nats_server  # a store of its own: the scans read only this test's files
    stream = "EV" + uuid4().hex[:10].upper()
    model = "q" + uuid4().hex[:8]
    scripted.configure(model, latency_s=5.0, responder=lambda req: Reply.text("late"))
    settings = Settings(nats_urls=[nats_server.url], nats_creds=nats_server.service_creds,
                        data_dir=tmp_path, events_stream=stream)
    agent = Agent(name="slow", model=f"scripted/{model}",
                  call_settings=CallSettings(max_retries=0))
    async with running(settings, agents=[agent]) as rt:
        c = rt.client("alice")
        tid = (await c.create_thread()).value["thread_id"]
        marker = mark()
        watch = rt.store.watch(Aggregate.thread(tid))
        gen = asyncio.ensure_future(c.generate_text("slow", tid, f"my secret is {marker}"))

        async def pending() -> None:
            async for rec in watch:
                if isinstance(rec.event, MessageSaved) and rec.event.status == "pending":
                    return

        await asyncio.wait_for(pending(), 10)
        info = await rt.nc.jetstream().stream_info(f"{stream}_GENERATIONS")
        assert info.state.messages == 1  # held by the worker, not acked
        hits = files_with(nats_server.store_dir, marker)
        assert any(f"/{stream}_GENERATIONS/" in h for h in hits), hits
        await c.delete_thread(tid)
        assert files_with(nats_server.store_dir, marker) == []
        gen.cancel()
        with contextlib.suppress(BaseException):
            await gen
    assert files_with(nats_server.store_dir, marker) == []
