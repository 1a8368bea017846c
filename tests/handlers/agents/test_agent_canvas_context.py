"""A generation in a thread with a canvas sees reference snippets of its edits."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from events import new_id
from handlers.agents.definition import Agent
from handlers.llm.call_settings import CallSettings
from handlers.llm.scripted import Reply, scripted
from tests.conftest import RuntimeFactory
from threadlog.runtime import Runtime


@pytest.fixture
async def rt(runtime_factory: RuntimeFactory) -> AsyncIterator[Runtime]:
    model = "t" + new_id()[:8]
    scripted.reset()
    agents = [Agent(name="designer", model=f"scripted/{model}", instructions="Design.",
                    call_settings=CallSettings(max_retries=0))]
    async with runtime_factory(agents=agents) as r:
        r.parts["model"] = model
        yield r


async def test_selection_brings_the_elements_edits_into_the_context(rt: Runtime) -> None:
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    doc = {"elements": {"header": {"type": "text", "text": "Hello"},
                        "logo": {"type": "image"}}}
    cid = (await c.command("cmd.canvas.create", thread_id=tid, document=doc)).value[
        "canvas_id"]
    await c.command("cmd.canvas.edit", canvas_id=cid, base_version=0,
                    summary="made the header bold",
                    ops=[{"op": "add", "path": "/elements/header/style",
                          "value": {"font_weight": "bold"}}])
    scripted.script(rt.parts["model"], [Reply.text("ok")])
    await c.generate_text("designer", tid, "make the logo like that",
                          canvas_selection=["header"])
    sent = scripted.requests(rt.parts["model"])[-1].messages
    assert sent[0]["content"] == "Design."
    canvas_msgs = [m for m in sent if m["role"] == "system" and cid in str(m["content"])]
    assert canvas_msgs and "made the header bold" in canvas_msgs[0]["content"]
    assert sent[-1]["content"] == "make the logo like that"


async def test_without_canvas_tools_or_selection_no_snippets_are_added(rt: Runtime) -> None:
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    await c.command("cmd.canvas.create", thread_id=tid)
    scripted.script(rt.parts["model"], [Reply.text("ok")])
    await c.generate_text("designer", tid, "hello")
    sent = scripted.requests(rt.parts["model"])[-1].messages
    assert [m["role"] for m in sent] == ["system", "user"]


async def test_embedding_calls_for_canvas_search_record_usage(rt: Runtime) -> None:
    from events import Aggregate

    rt.handlers.generator.agents.add(Agent(
        name="searcher", model=f"scripted/{rt.parts['model']}", embedding_model="scripted/emb",
        call_settings=CallSettings(max_retries=0)))
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    doc = {"elements": {"header": {"type": "text", "text": "Hello"}}}
    cid = (await c.command("cmd.canvas.create", thread_id=tid, document=doc)).value[
        "canvas_id"]
    await c.command("cmd.canvas.edit", canvas_id=cid, base_version=0, summary="bold header",
                    ops=[{"op": "add", "path": "/elements/header/style",
                          "value": {"font_weight": "bold"}}])
    scripted.script(rt.parts["model"], [Reply.text("ok")])
    await c.generate_text("searcher", tid, "make it bold again", canvas_selection=["header"])
    kinds = [e.event.kind for e in await rt.store.read(Aggregate("usage", "u1"))]
    # the edits' summaries, the prompt (shared by canvas and message search), the reply
    assert kinds.count("completion") == 1 and kinds.count("embedding") == 3
