"""The playground page in a real headless Chromium: a user's credentials open their
thread, a prompt's answer streams in live, a tool call is approved from the page and a
canvas edit shows up, all by subscription."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from handlers.llm.scripted import Reply, scripted
from tests.threadlog.playground.conftest import PlaygroundFactory
from threadlog.runtime import Runtime

ANSWER = "Lisbon is sunny and bright today, a fine day for a long walk by the river."


async def timings(page: Any) -> dict[str, Any]:
    value: dict[str, Any] = await page.evaluate("window.__playground")
    return value


async def test_user_streams_an_answer_approves_a_tool_and_sees_a_canvas_edit(
        rt: Runtime, playground: PlaygroundFactory, browser: Any, artifacts: Path) -> None:
    alice = rt.client("alice")
    tid = (await alice.create_thread(title="Trip to Lisbon")).value["thread_id"]
    doc = {"elements": {"title": {"type": "text", "text": "Lisbon"}}}
    cid = (await alice.command("cmd.canvas.create", thread_id=tid, title="Plan",
                               document=doc)).value["canvas_id"]
    # warm up (litellm's first import and call take seconds): the page measures a warm call
    warm = (await alice.create_thread(title="warm up")).value["thread_id"]
    await alice.generate_text("assistant", warm, "warm up")
    scripted.script(rt.parts["model"], [
        Reply.text(ANSWER),
        Reply.tool_call("book_table", {"restaurant": "Ramiro", "people": 2}),
        Reply.text("Your table at Ramiro is booked."),
        Reply.tool_call("edit_canvas", {"canvas_id": cid, "base_version": 0,
                                        "summary": "made the title bold",
                                        "ops": [{"op": "add", "path": "/elements/title/style",
                                                 "value": {"font_weight": "bold"}}]}),
        Reply.text("The title is bold now."),
    ])
    async with playground("user", "alice") as pg:
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            await drive(page, pg.url, tid, cid, artifacts)
        except BaseException:
            await page.screenshot(path=str(artifacts / "failed-page.png"), full_page=True)
            (artifacts / "failed-page.log").write_text(json.dumps(
                await page.evaluate("window.__playground.log"), indent=1))
            raise
        finally:
            await page.close()


async def drive(page: Any, url: str, tid: str, cid: str, artifacts: Path) -> None:
    """Stream an answer, approve a tool call, see the canvas edit (see the test)."""
    await page.goto(url)
    await page.wait_for_selector("body[data-ready='1'][data-live='alice']")
    rendered = (await timings(page))["renderedAt"]
    assert await page.text_content("#whoami") == "user alice"

    await page.click(f"li[data-thread='{tid}']")
    await page.wait_for_selector("#composer:not([hidden])")
    await page.fill("#prompt", "What is Lisbon like today?")
    await page.click("#send")
    try:
        await page.wait_for_selector(
            f".msg.role-assistant.status-success:has-text('{ANSWER}')")
    finally:
        await page.screenshot(path=str(artifacts / "1-streamed-answer.png"), full_page=True)
    # the text arrives live, as deltas (the last chunk may come just after the finished
    # message: deltas and thread events travel on different subjects)
    await page.wait_for_function(
        "text => Object.values(window.__playground.streamed).includes(text)", arg=ANSWER)
    first = await timings(page)
    assert first["deltas"] >= 2, first  # streamed in several chunks, not one

    # a tool that needs approval: the live feed shows the request, the page approves
    await page.fill("#prompt", "Book a table for two at Ramiro")
    await page.click("#send")
    approval = page.locator(".approval", has_text="book_table")
    await approval.wait_for()
    await page.screenshot(path=str(artifacts / "2-approval-requested.png"), full_page=True)
    await approval.locator("button.approve").click()
    await page.wait_for_selector(
        ".msg.status-success:has-text('Your table at Ramiro is booked.')")
    result = page.locator(".tool.result", has_text="book_table")
    assert "Ramiro" in (await result.text_content() or "")
    assert await page.locator(".approval").count() == 0

    # the agent edits the canvas: the panel shows the new version and the edit
    await page.fill("#prompt", "Make the title bold")
    await page.click("#send")
    canvas = page.locator(f"[data-canvas='{cid}'][data-version='1']")
    await canvas.wait_for()
    assert "made the title bold" in (await canvas.text_content() or "")
    assert json.loads(await canvas.locator("pre.document").text_content() or "{}")[
        "elements"]["title"]["style"] == {"font_weight": "bold"}
    await page.wait_for_selector(".msg.status-success:has-text('The title is bold now.')")
    await page.screenshot(path=str(artifacts / "3-canvas-edit.png"), full_page=True)

    # messages are in order with their step order, usage per message
    orders = await page.locator(".msg .order").all_text_contents()
    assert orders == sorted(orders, key=lambda o: tuple(int(x) for x in o[1:].split(".")))
    assert await page.locator(".msg .usage").count() >= 1

    assert first["firstDeltaAt"] is not None and first["sentAt"] is not None
    delta_ms = first["firstDeltaAt"] - first["sentAt"]
    print(f"\nplayground first render {rendered:.0f} ms after navigation start; "
          f"first delta {delta_ms:.1f} ms after send")
