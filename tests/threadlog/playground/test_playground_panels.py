"""The playground's side panels: usage per period, and workflow runs with their steps,
cancelled from the page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from events import new_id
from handlers.llm.scripted import Reply, scripted
from scheduler.workflows import Step, Workflows
from tests.conftest import RuntimeFactory
from tests.threadlog.playground.conftest import PlaygroundFactory
from threadlog import App
from threadlog.cli_playground import demo_agent
from threadlog.runtime import Runtime
from threadlog.serve import default_parts

workflows = Workflows()


async def prepare(args: Any, key: Any) -> dict[str, Any]:
    return {"ready": True}


@workflows.define("hold")
async def hold(step: Step, args: Any) -> Any:
    """Records one step, then waits for an event named ``go``."""
    await step.run(prepare, name="prepare")
    return await step.await_event("go")


@pytest.fixture
async def rt(runtime_factory: RuntimeFactory) -> AsyncIterator[Runtime]:
    model = "pg" + new_id()[:8]
    scripted.reset()
    app = App(agents=[demo_agent(f"scripted/{model}")], workflows=workflows)
    async with runtime_factory(app=app, extra_parts=default_parts()) as r:
        r.parts["model"] = model
        yield r


async def test_usage_of_a_period_is_shown_per_model(rt: Runtime,
                                                    playground: PlaygroundFactory) -> None:
    alice = rt.client("alice")
    tid = (await alice.create_thread()).value["thread_id"]
    scripted.script(rt.parts["model"], [Reply.text("one two three")])
    done = await alice.generate_text("assistant", tid, "count")
    await alice.query("query.threads.list", min_seq=done.seq)
    async with playground("user", "alice") as pg, httpx.AsyncClient(base_url=pg.url) as http:
        res = (await http.get("/api/users/alice/usage")).json()["result"]
        summary = res["summary"]["result"]
        assert summary["totals"]["calls"] == 1
        assert [m["model"] for m in summary["by_model"]] == [f"scripted/{rt.parts['model']}"]
        assert "invoices" not in res  # a user's connection cannot read the invoices view
        res = await http.get("/api/users/alice/usage", params={"period": "2026-13"})
        assert res.status_code == 400


async def test_workflow_runs_show_their_steps_and_cancel_from_the_page(
        rt: Runtime, playground: PlaygroundFactory, browser: Any, artifacts: Path) -> None:
    alice = rt.client("alice")
    run_id = (await alice.command("cmd.workflow.start", name="hold")).value["run_id"]
    async with playground("user", "alice") as pg:
        page = await browser.new_page(viewport={"width": 1400, "height": 700})
        await page.goto(pg.url)
        await page.wait_for_selector("body[data-ready='1']")
        await page.click("button[data-tab='workflows']")
        run = page.locator(f".run[data-run='{run_id}']")
        await run.wait_for()
        assert "hold" in (await run.text_content() or "")
        assert await run.locator("tr").count() >= 1  # the recorded step
        await run.locator("button.cancel").click()
        await page.wait_for_selector(f".run[data-run='{run_id}'] "
                                     ".action-result[data-op='cancel'][data-ok='1']")
        ended = await rt.parts["workflows"].client.wait(run_id, completion=False)
        assert ended.state == "canceled"
        await page.click("#workflows-reload")
        await page.wait_for_selector(f".run[data-run='{run_id}'] .state:text-is('canceled')")
        await page.screenshot(path=str(artifacts / "5-workflows.png"), full_page=True)
        await page.close()


async def test_context_preview_shows_what_the_model_would_get_without_calling_it(
        rt: Runtime, playground: PlaygroundFactory, browser: Any, artifacts: Path) -> None:
    from handlers.agents.context_preview import ContextPreviewService

    preview = await ContextPreviewService(rt.handlers.generator).start(rt.nc)
    alice = rt.client("alice")
    tid = (await alice.create_thread(title="Context")).value["thread_id"]
    model = rt.parts["model"]
    scripted.script(model, [Reply.text("first answer"), Reply.text("second answer")])
    await alice.generate_text("assistant", tid, "first question")
    await alice.generate_text("assistant", tid, "second question")
    calls = len(scripted.requests(model))
    bob_tid = (await rt.client("bob").create_thread()).value["thread_id"]
    try:
        async with playground("user", "alice") as pg:
            page = await browser.new_page(viewport={"width": 1400, "height": 700})
            await page.goto(pg.url)
            await page.wait_for_selector("body[data-ready='1']")
            await page.click(f"li[data-thread='{tid}']")
            await page.click("button[data-tab='context']")
            await page.fill("#context-prompt", "third question")
            await page.fill("#ctx-recent", "2")
            await page.click("#context-form button")
            await page.wait_for_selector("#context pre.ctx")
            shown = await page.locator("#context pre.ctx").all_text_contents()
            await page.screenshot(path=str(artifacts / "6-context-preview.png"), full_page=True)
            await page.close()
            async with httpx.AsyncClient(base_url=pg.url) as http:
                res = await http.post(f"/api/users/alice/threads/{bob_tid}/context",
                                      json={"agent": "assistant", "prompt": "leak"})
                assert res.status_code == 403, res.text
    finally:
        await preview.stop()
    # instructions, the two most recent messages, then the prompt; no model call made
    assert shown == ["system: You are a concise assistant.", "user: second question",
                     "assistant: second answer", "user: third question"]
    assert len(scripted.requests(model)) == calls
