"""Reference snippets for a follow-up edit, and the scripted model driving an agent
through read, edit, conflict and retry with the canvas tools."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from events import new_id
from handlers.agents.definition import Agent
from handlers.canvas import (
    CanvasService,
    SnippetOptions,
    canvas_context_messages,
    canvas_tools,
    format_reference_message,
    reference_snippets,
    subjects,
)
from handlers.canvas.state import canvas_aggregate
from handlers.llm.call_settings import NO_BACKOFF, CallSettings
from handlers.llm.scripted import Reply, scripted
from tests.conftest import RuntimeFactory
from threadlog.runtime import Runtime


@pytest.fixture
async def rt(runtime_factory: RuntimeFactory) -> AsyncIterator[Runtime]:
    model = "canvas" + new_id()[:8]
    scripted.reset()
    agents = [Agent(name="designer", model=f"scripted/{model}", tools=canvas_tools(),
                    call_settings=CallSettings(max_retries=1, backoff=NO_BACKOFF))]
    async with runtime_factory(agents=agents) as r:
        r.parts["canvas"] = r.handlers.canvas
        r.parts["model"] = model
        yield r


DOC = {"elements": {
    "header": {"type": "text", "text": "Quarterly plan", "width": 200, "height": 40},
    "logo": {"type": "image", "x": 500, "width": 80, "height": 80},
    "chart": {"type": "chart", "x": 0, "y": 100, "width": 400, "height": 300},
    "footer": {"type": "text", "text": "Confidential", "y": 900},
}}


async def edit(rt: Runtime, cid: str, base: int, ops: list[dict[str, Any]],
               summary: str | None = None) -> None:
    await rt.client("u1").command(subjects.EDIT, canvas_id=cid, base_version=base, ops=ops,
                                  **({"summary": summary} if summary else {}))


async def test_context_picks_selected_text_matching_and_recent_edits(rt: Runtime) -> None:
    """Yesterday the header got a blue gradient; since then many unrelated edits. The
    follow-up "make the footer like the header gradient" with the footer selected must
    see the header's restyle (text match), the footer's own last edit (selection) and the
    most recent edits, and not the rest."""
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    cid = (await c.command(subjects.CREATE, thread_id=tid, document=DOC)).value["canvas_id"]
    await edit(rt, cid, 0, [{"op": "replace", "path": "/elements/footer/y", "value": 950}])
    await edit(rt, cid, 1, [{"op": "add", "path": "/elements/header/style",
                             "value": {"fill": "linear-gradient(blue, navy)"}}],
               summary="header gets a blue gradient background")
    for v in range(2, 30):  # unrelated: the chart moves around
        await edit(rt, cid, v, [{"op": "replace", "path": "/elements/chart/x", "value": v}])
    await edit(rt, cid, 30, [{"op": "replace", "path": "/elements/logo/width", "value": 90}])

    svc: CanvasService = rt.parts["canvas"]
    state = await svc.state_for("u1", cid)
    opts = SnippetOptions(recent=2, per_element=1, text_matches=1, token_budget=2_000)
    snippets = reference_snippets(state, "make the footer like the header gradient",
                                  ["footer"], opts)
    assert [(s.version, s.reasons) for s in snippets] == [
        (1, ("selected:footer",)), (2, ("text",)), (30, ("recent",)), (31, ("recent",))]
    message = format_reference_message(state, snippets, opts)
    assert f"Canvas {cid}" in message["content"] and "version 31" in message["content"]
    assert "blue gradient" in message["content"]

    tight = reference_snippets(state, "make the footer like the header gradient",
                               ["footer"], SnippetOptions(recent=2, per_element=1,
                                                          text_matches=1, token_budget=120))
    versions = [s.version for s in tight]  # the budget keeps the highest priority first
    assert versions[0] == 1 and 2 not in versions and len(versions) < 4
    # the same through the thread: the directory finds the canvas of the thread
    msgs = await canvas_context_messages(svc, tid, "u1", "header gradient", (), opts)
    assert len(msgs) == 1 and "v2 by user u1" in msgs[0]["content"]
    vec = await canvas_context_messages(svc, tid, "u1", "blue gradient header", (),
                                        SnippetOptions(recent=0, text_matches=0,
                                                       vector_matches=1),
                                        embedding_model="scripted/hash-64")
    assert "v2 by user u1" in vec[0]["content"]


async def test_scripted_agent_reads_edits_hits_a_conflict_and_retries(rt: Runtime) -> None:
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    cid = (await c.command(subjects.CREATE, thread_id=tid, document=DOC)).value["canvas_id"]
    # a person edits between the agent's read and its first edit: the agent's base is stale
    await edit(rt, cid, 0, [{"op": "replace", "path": "/elements/logo/x", "value": 520}])
    resize = [{"op": "replace", "path": "/elements/header/width", "value": 320}]
    scripted.script(rt.parts["model"], [
        Reply.tool_call("read_canvas", {"canvas_id": cid, "element_ids": ["header"]}),
        Reply.tool_call("edit_canvas", {"canvas_id": cid, "base_version": 0, "ops": resize}),
        Reply.tool_call("edit_canvas", {"canvas_id": cid, "base_version": 1, "ops": resize,
                                        "summary": "widen the header"}),
        Reply.text("The header is wider now."),
    ])
    res = (await c.generate_text("designer", tid, "widen the header")).value
    assert res["text"] == "The header is wider now."
    requests = scripted.requests(rt.parts["model"])
    tool_results = [m for m in requests[-1].messages if m.get("role") == "tool"]
    assert "Quarterly plan" in str(tool_results[0]["content"])
    assert "conflict" in str(tool_results[1]["content"])
    assert "current_version" in str(tool_results[1]["content"])
    assert '"version": 2' in str(tool_results[2]["content"]) or "'version': 2" in str(
        tool_results[2]["content"])
    edits = [r.event for r in (await rt.store.read(canvas_aggregate(cid)))[1:]]
    assert [(e.version, e.author, e.author_kind) for e in edits] == [  # type: ignore[attr-defined]
        (1, "u1", "user"), (2, "designer", "agent")]
    assert edits[1].summary == "widen the header"  # type: ignore[attr-defined]
    assert edits[1].message_id is not None  # type: ignore[attr-defined]
    doc = (await c.request(subjects.GET, {"user_id": "u1", "canvas_id": cid})).value
    assert doc["document"]["elements"]["header"]["width"] == 320
