"""Processes that heal: connections come back after NATS restarts, and a process whose
NATS stays away past the bound says so (``serve`` then exits non-zero), never deaf."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from events import Unavailable
from threadlog.embedded_nats import EmbeddedNats
from threadlog.runtime import running
from threadlog.settings import Settings


def settings_on(srv: EmbeddedNats, tmp_path: Path, **more: Any) -> Settings:
    return Settings(nats_urls=[srv.url], nats_creds=srv.service_creds, data_dir=tmp_path,
                    **more)


async def test_handlers_serve_again_after_nats_restarts(fresh_nats_server: EmbeddedNats,
                                                       tmp_path: Path) -> None:
    async with running(settings_on(fresh_nats_server, tmp_path)) as rt:
        client = rt.client("u1")
        await client.create_thread(title="before")
        assert rt.watchdog is not None and rt.watchdog.healthy
        fresh_nats_server.stop()
        fresh_nats_server.start()  # same port, same store
        deadline = asyncio.get_running_loop().time() + 20
        while True:  # bounded: a client retries until both connections are back
            try:
                res = await client.create_thread(title="after")
                break
            except Exception:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)
        assert res.seq is not None and rt.watchdog.healthy


async def test_a_process_whose_nats_stays_away_gives_up_within_its_bound(
        fresh_nats_server: EmbeddedNats, tmp_path: Path) -> None:
    async with running(settings_on(fresh_nats_server, tmp_path, nats_down_exit_s=1.5)) as rt:
        assert rt.watchdog is not None
        watch = asyncio.ensure_future(rt.watchdog.failed())
        fresh_nats_server.stop()
        with pytest.raises(Unavailable, match="unreachable"):
            await asyncio.wait_for(watch, 15)
        assert not rt.watchdog.healthy
        fresh_nats_server.start()  # let the runtime close cleanly
