"""Fixtures for the playground tests: a runtime with the serve parts (projector, live
relay, workflows) and a demo-like agent on the scripted model, the playground served by
uvicorn on a free port with a given role's credentials, and headless Chromium (Debian's
package) driven by Playwright."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from events import new_id
from handlers.llm.scripted import scripted
from tests.conftest import RuntimeFactory
from threadlog.cli_playground import DEMO_AGENT, demo_agent
from threadlog.embedded_nats import EmbeddedNats
from threadlog.playground import Bridge, create_app
from threadlog.runtime import Runtime
from threadlog.serve import default_parts

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("THREADLOG_TEST_ARTIFACTS",
                                Path(__file__).resolve().parents[3] / "test-artifacts")
                 ) / "playground"


@pytest.fixture
async def rt(runtime_factory: RuntimeFactory) -> AsyncIterator[Runtime]:
    """Handlers + projector + live relay + workflows, with the playground's demo agent on
    a scripted model of this test's own (``rt.parts["model"]``)."""
    model = "pg" + new_id()[:8]
    scripted.reset()
    async with runtime_factory(agents=[demo_agent(f"scripted/{model}")],
                               extra_parts=default_parts()) as r:
        r.parts["model"] = model
        yield r


@dataclass
class Playground:
    url: str
    bridge: Bridge


PlaygroundFactory = Callable[[str, str], AbstractAsyncContextManager[Playground]]


@pytest.fixture
def playground(rt: Runtime, nats_server: EmbeddedNats, tmp_path: Path) -> PlaygroundFactory:
    """``async with playground(role, name) as pg``: the playground app under uvicorn on a
    free port, connected with credentials issued for ``role``/``name``."""
    import uvicorn

    @asynccontextmanager
    async def make(role: str, name: str) -> AsyncIterator[Playground]:
        endpoint = nats_server.endpoint_for(role, name, tmp_path / f"pg-{role}-{name}.creds")
        bridge = await Bridge(endpoint).start()
        app = create_app(bridge, agents=[DEMO_AGENT])
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)  # connections queue in the backlog until uvicorn accepts them
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                               timeout_graceful_shutdown=1, lifespan="on"))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            yield Playground(f"http://127.0.0.1:{port}", bridge)
        finally:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
            sock.close()
            await bridge.close()

    return make


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless Chromium page factory (Debian's ``chromium``: never ``playwright
    install``); skipped with the reason when ``/usr/bin/chromium`` is missing."""
    if not CHROMIUM.exists():
        pytest.skip("no Chromium at /usr/bin/chromium (apt-get install -y chromium): the "
                    "playground's browser tests need a real browser")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go (``$THREADLOG_TEST_ARTIFACTS/playground``, default
    ``test-artifacts/playground`` in the checkout)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
