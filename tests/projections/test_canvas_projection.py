"""The canvas_state and canvas_edits views, projected from the log by the projector."""

from __future__ import annotations

import json

import pytest

from events import Aggregate, EventStore, ThreadCreated, ThreadDeleted, new_id
from handlers.canvas import CanvasService
from handlers.canvas.commands import CreateCanvas, EditCanvas, RevertCanvasEdit
from handlers.threads.state import ThreadStateCache
from projections.projector import Projector
from projections.view import View
from projections.views.canvas import CanvasEditsView, CanvasStateView


@pytest.fixture
def projector_views() -> list[View]:
    return [CanvasStateView(), CanvasEditsView()]


async def canvas_with_edits(store: EventStore, edits: int) -> tuple[CanvasService, str, str]:
    tid = new_id()
    await store.append(Aggregate.thread(tid), [ThreadCreated(thread_id=tid, user_id="u1")])
    svc = CanvasService(store, ThreadStateCache(store))
    cid = (await svc.create(CreateCanvas(
        command_id=new_id(), user_id="u1", thread_id=tid, title="t",
        document={"elements": {"box": {"type": "rect", "x": 0}}}))).result["canvas_id"]
    for v in range(edits):
        await svc.edit(EditCanvas(command_id=new_id(), user_id="u1", canvas_id=cid,
                                  base_version=v, agent_name="bot" if v % 2 else None, ops=[
            {"op": "replace", "path": "/elements/box/x", "value": v},
            {"op": "add", "path": f"/elements/n{v % 3}", "value": {"type": "dot", "y": v}}]))
    return svc, tid, cid


async def test_canvas_state_is_the_replay_and_edits_are_rows(store: EventStore,
                                                             projector: Projector) -> None:
    svc, _, cid = await canvas_with_edits(store, 25)
    last = (await svc.revert(RevertCanvasEdit(command_id=new_id(), user_id="u1",
                                              canvas_id=cid, version=25))).seq
    assert last is not None
    await projector.wait_for(last, timeout=10)
    state = await svc.state_for("u1", cid)
    cur = projector.cursor()
    (doc, version, count) = cur.execute(
        "SELECT document, version, element_count FROM canvas_state WHERE canvas_id = ?",
        [cid]).fetchone() or (None, None, None)
    assert json.loads(str(doc)) == state.document and version == 26 and count == 4
    rows = cur.execute("SELECT version, author, author_kind, reverts FROM canvas_edits "
                       "WHERE canvas_id = ? ORDER BY version", [cid]).fetchall()
    assert [r[0] for r in rows] == list(range(1, 27))
    assert rows[1][1:3] == ("bot", "agent") and rows[-1][3] == 25
    touching = cur.execute("SELECT count(*) FROM canvas_edits WHERE canvas_id = ? AND "
                           "list_contains(CAST(touched AS VARCHAR[]), 'n0')", [cid]).fetchone()
    assert touching == (len(state.index.by_element["n0"]),)


async def test_deleting_the_thread_removes_its_canvas_rows(store: EventStore,
                                                           projector: Projector) -> None:
    _, tid, cid = await canvas_with_edits(store, 3)
    r = await store.append(Aggregate.thread(tid), [ThreadDeleted(thread_id=tid)])
    await projector.wait_for(r.last_seq, timeout=10)
    cur = projector.cursor()
    for table in ("canvas_state", "canvas_edits"):
        assert cur.execute(f"SELECT count(*) FROM {table} WHERE canvas_id = ?",
                           [cid]).fetchone() == (0,)
