"""Canvas commands over a real nats-server: edits, races, reverts, versions, bad input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from events import ThreadlogError, new_id
from handlers import Client
from handlers.canvas import CanvasSchema, CanvasService, subjects
from handlers.canvas.patching import apply_patch
from handlers.canvas.state import canvas_aggregate
from tests.conftest import RuntimeFactory
from threadlog.runtime import Runtime


@pytest.fixture
async def rt(runtime_factory: RuntimeFactory) -> AsyncIterator[Runtime]:
    async with runtime_factory(canvas_schema=CanvasSchema(max_document_bytes=50_000)) as r:
        r.parts["canvas"] = r.handlers.canvas
        yield r


async def cmd(c: Client, subject: str, **fields: Any) -> Any:
    return (await c.command(subject, **fields)).value


async def query(c: Client, subject: str, **fields: Any) -> Any:
    return (await c.request(subject, {"user_id": c.user_id, **fields})).value


async def new_canvas(rt: Runtime, user: str = "u1", **doc: Any) -> tuple[str, str]:
    c = rt.client(user)
    tid = (await c.create_thread()).value["thread_id"]
    elements = doc or {"header": {"type": "text", "text": "Quarterly plan", "x": 0, "y": 0,
                                  "width": 200, "height": 40},
                       "box": {"type": "rect", "x": 10, "y": 60, "width": 100,
                               "height": 100, "style": {"fill": "red"}}}
    res = await cmd(c, subjects.CREATE, thread_id=tid, title="plan",
                    document={"elements": elements})
    return tid, res["canvas_id"]


async def replay(rt: Runtime, cid: str, upto: int | None = None) -> dict[str, Any]:
    """The document rebuilt from the log alone: the creation, then every edit's ops."""
    doc: dict[str, Any] = {}
    for rec in await rt.store.read(canvas_aggregate(cid)):
        ev = rec.event
        if ev.type == "canvas_created":
            doc = {"elements": {}, **ev.document}  # type: ignore[attr-defined]
        elif upto is None or ev.version <= upto:  # type: ignore[attr-defined]
            doc = apply_patch(doc, ev.ops).document  # type: ignore[attr-defined]
    return doc


async def test_edit_records_touched_elements_summary_and_snippet(rt: Runtime) -> None:
    c = rt.client("u1")
    tid, cid = await new_canvas(rt)
    res = await c.command(subjects.EDIT, canvas_id=cid, base_version=0, ops=[
        {"op": "replace", "path": "/elements/header/width", "value": 300}])
    assert res.value["version"] == 1 and res.value["touched"] == ["header"]
    assert res.value["summary"] == 'resized text header "Quarterly plan"'
    events = await rt.store.read(canvas_aggregate(cid))
    assert res.seq == events[-1].seq
    ev = events[-1].event
    assert ev.thread_id == tid and ev.author == "u1" and ev.author_kind == "user"  # type: ignore[attr-defined]
    assert ev.snippet["before"]["header"]["width"] == 200  # type: ignore[attr-defined]
    assert ev.snippet["after"]["header"]["width"] == 300  # type: ignore[attr-defined]
    got = await query(c, subjects.GET, canvas_id=cid, element_ids=["header", "ghost"])
    assert got["document"]["elements"]["header"]["width"] == 300
    assert got["missing"] == ["ghost"] and got["version"] == 1


async def test_stale_base_version_is_a_conflict_with_the_current_version(rt: Runtime) -> None:
    c = rt.client("u1")
    _, cid = await new_canvas(rt)
    op = [{"op": "replace", "path": "/elements/box/x", "value": 5}]
    await cmd(c, subjects.EDIT, canvas_id=cid, base_version=0, ops=op)
    before = await rt.store.last_seq()
    with pytest.raises(ThreadlogError) as ei:
        await cmd(c, subjects.EDIT, canvas_id=cid, base_version=0, ops=op)
    assert ei.value.code == "conflict" and ei.value.details["current_version"] == 1
    assert await rt.store.last_seq() == before


async def test_resent_edit_appends_nothing_and_returns_the_first_reply(rt: Runtime) -> None:
    c = rt.client("u1")
    _, cid = await new_canvas(rt)
    op = [{"op": "replace", "path": "/elements/box/x", "value": 5}]
    first = await c.command(subjects.EDIT, "edit-1", canvas_id=cid, base_version=0, ops=op)
    again = await c.command(subjects.EDIT, "edit-1", canvas_id=cid, base_version=0, ops=op)
    assert again == first
    svc: CanvasService = rt.parts["canvas"]
    svc.canvases.forget(cid)  # a restarted process: answered from the canvas's events
    await rt.handlers.runner.command_log.kv.purge("u1.edit-1")  # type: ignore[union-attr]
    third = await c.command(subjects.EDIT, "edit-1", canvas_id=cid, base_version=0, ops=op)
    assert third == first
    assert len(await rt.store.read(canvas_aggregate(cid))) == 2


async def test_two_editors_racing_apply_every_edit_exactly_once(rt: Runtime) -> None:
    """Each editor increments a shared counter (guarded by a `test` op) and adds its own
    element, retrying on conflicts: the final document is the serial result and equals
    the replay of the edit events."""
    _, cid = await new_canvas(rt, counter={"type": "counter", "data": {"n": 0}})
    per_editor = 25

    async def editor(name: str) -> int:
        c = rt.client("u1")
        conflicts = 0
        for i in range(per_editor):
            while True:
                got = await query(c, subjects.GET, canvas_id=cid, element_ids=["counter"])
                n = got["document"]["elements"]["counter"]["data"]["n"]
                try:
                    await cmd(c, subjects.EDIT, canvas_id=cid, base_version=got["version"],
                              ops=[{"op": "test", "path": "/elements/counter/data/n", "value": n},
                                   {"op": "replace", "path": "/elements/counter/data/n",
                                    "value": n + 1},
                                   {"op": "add", "path": f"/elements/{name}-{i}",
                                    "value": {"type": "dot", "x": i}}])
                    break
                except ThreadlogError as exc:
                    assert exc.code == "conflict"
                    conflicts += 1
        return conflicts

    conflicts = await asyncio.gather(editor("a"), editor("b"))
    got = await query(rt.client("u1"), subjects.GET, canvas_id=cid)
    doc = got["document"]
    assert got["version"] == 2 * per_editor
    assert doc["elements"]["counter"]["data"]["n"] == 2 * per_editor
    assert {k for k in doc["elements"] if k != "counter"} == {
        f"{e}-{i}" for e in "ab" for i in range(per_editor)}
    assert doc == await replay(rt, cid)
    recs = (await rt.store.read(canvas_aggregate(cid)))[1:]
    versions = [r.event.version for r in recs]  # type: ignore[attr-defined]
    assert versions == list(range(1, 2 * per_editor + 1))
    assert sum(conflicts) > 0  # they did race


async def test_two_processes_racing_on_one_canvas_never_lose_an_edit(rt: Runtime) -> None:
    """Two services with their own caches (as two handler processes) on one stream: the
    store's per-canvas expected version turns a stale decision into a conflict."""
    from handlers.canvas.commands import EditCanvas

    _, cid = await new_canvas(rt, counter={"type": "counter", "data": {"n": 0}})
    services = [CanvasService(rt.store, rt.handlers.states) for _ in range(2)]

    async def editor(svc: CanvasService, rounds: int) -> None:
        for _ in range(rounds):
            while True:
                st = await svc.state_for("u1", cid)
                n = st.document["elements"]["counter"]["data"]["n"]
                try:
                    await svc.edit(EditCanvas(
                        command_id=new_id(), user_id="u1", canvas_id=cid,
                        base_version=st.version,
                        ops=[{"op": "replace", "path": "/elements/counter/data/n",
                              "value": n + 1}]))
                    break
                except ThreadlogError as exc:
                    assert exc.code == "conflict"

    await asyncio.gather(*(editor(s, 20) for s in services))
    doc = await replay(rt, cid)
    assert doc["elements"]["counter"]["data"]["n"] == 40


async def test_revert_restores_the_earlier_state_and_is_itself_recorded(rt: Runtime) -> None:
    c = rt.client("u1")
    _, cid = await new_canvas(rt)
    v0 = (await query(c, subjects.GET, canvas_id=cid))["document"]
    await cmd(c, subjects.EDIT, canvas_id=cid, base_version=0, ops=[
        {"op": "replace", "path": "/elements/header/width", "value": 400},
        {"op": "add", "path": "/elements/note", "value": {"type": "sticky", "text": "hi"}}])
    await cmd(c, subjects.EDIT, canvas_id=cid, base_version=1, ops=[
        {"op": "add", "path": "/elements/header/style", "value": {"color": "blue"}}])
    res = await cmd(c, subjects.REVERT, canvas_id=cid, version=1)
    assert res["version"] == 3 and res["reverts"] == 1
    doc = (await query(c, subjects.GET, canvas_id=cid))["document"]
    assert "note" not in doc["elements"]
    assert doc["elements"]["header"]["width"] == 200  # undone
    assert doc["elements"]["header"]["style"] == {"color": "blue"}  # the later edit stays
    await cmd(c, subjects.REVERT, canvas_id=cid, version=2)
    assert (await query(c, subjects.GET, canvas_id=cid))["document"] == v0
    assert doc == (await query(c, subjects.GET, canvas_id=cid, version=3))["document"]
    hist = await query(c, subjects.HISTORY, canvas_id=cid, include_snippets=False)
    assert [e["reverts"] for e in hist["edits"]] == [2, 1, None, None]


async def test_revert_of_an_edit_changed_again_since_is_refused(rt: Runtime) -> None:
    c = rt.client("u1")
    _, cid = await new_canvas(rt)
    await cmd(c, subjects.EDIT, canvas_id=cid, base_version=0, ops=[
        {"op": "replace", "path": "/elements/box/x", "value": 1}])
    await cmd(c, subjects.EDIT, canvas_id=cid, base_version=1, ops=[
        {"op": "replace", "path": "/elements/box/x", "value": 2}])
    before = await rt.store.last_seq()
    with pytest.raises(ThreadlogError) as ei:
        await cmd(c, subjects.REVERT, canvas_id=cid, version=1)
    assert ei.value.code == "revert_conflict" and await rt.store.last_seq() == before


async def test_state_at_version_n_equals_the_replay_up_to_n(rt: Runtime) -> None:
    from handlers.canvas import state as canvas_state

    c = rt.client("u1")
    _, cid = await new_canvas(rt)
    old_every = canvas_state.SNAPSHOT_EVERY
    canvas_state.SNAPSHOT_EVERY = 7  # exercise snapshots + after-images
    try:
        for v in range(30):
            ops: list[dict[str, Any]] = [
                {"op": "replace", "path": "/elements/box/x", "value": v},
                {"op": "add", "path": f"/elements/e{v % 4}", "value": {"type": "dot", "y": v}}]
            if v % 5 == 4:
                ops.append({"op": "remove", "path": f"/elements/e{v % 4}"})
            await cmd(c, subjects.EDIT, canvas_id=cid, base_version=v, ops=ops)
        for n in (0, 1, 6, 7, 13, 14, 22, 29, 30):
            got = await query(c, subjects.GET, canvas_id=cid, version=n)
            assert got["document"] == await replay(rt, cid, upto=n), n
        svc: CanvasService = rt.parts["canvas"]
        svc.canvases.forget(cid)  # a cold load folds the log to the same state
        assert (await query(c, subjects.GET, canvas_id=cid, version=13))["document"] == \
            await replay(rt, cid, upto=13)
    finally:
        canvas_state.SNAPSHOT_EVERY = old_every
    with pytest.raises(ThreadlogError) as ei:
        await query(c, subjects.GET, canvas_id=cid, version=31)
    assert ei.value.code == "not_found"


async def test_history_pages_newest_first_and_filters_by_element_and_author(rt: Runtime
                                                                           ) -> None:
    c = rt.client("u1")
    _, cid = await new_canvas(rt)
    for v in range(10):
        target = "box" if v % 2 else "header"
        await cmd(c, subjects.EDIT, canvas_id=cid, base_version=v,
                  agent_name="painter" if v % 3 == 0 else None,
                  ops=[{"op": "replace", "path": f"/elements/{target}/x", "value": v + 100}])
    seen: list[int] = []
    cursor = None
    while True:
        page = await query(c, subjects.HISTORY, canvas_id=cid, limit=3,
                           **({"cursor": cursor} if cursor else {}))
        seen += [e["version"] for e in page["edits"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(range(10, 0, -1))
    box = await query(c, subjects.HISTORY, canvas_id=cid, element_id="box")
    assert [e["version"] for e in box["edits"]] == [10, 8, 6, 4, 2]
    both = await query(c, subjects.HISTORY, canvas_id=cid, element_id="header",
                       author="painter")
    assert [(e["version"], e["author_kind"]) for e in both["edits"]] == [
        (7, "agent"), (1, "agent")]


async def test_canvas_needs_a_thread_the_user_owns(rt: Runtime) -> None:
    c1, c2 = rt.client("u1"), rt.client("u2")
    tid, cid = await new_canvas(rt)
    with pytest.raises(ThreadlogError) as ei:
        await cmd(c2, subjects.CREATE, thread_id=tid)
    assert ei.value.code == "forbidden"
    with pytest.raises(ThreadlogError) as ei:
        await cmd(c1, subjects.CREATE, thread_id="no-such-thread")
    assert ei.value.code == "not_found"
    for subject, fields in [(subjects.EDIT, {"base_version": 0, "ops": [
            {"op": "remove", "path": "/elements/box"}]}), (subjects.REVERT, {"version": 1})]:
        with pytest.raises(ThreadlogError) as ei:
            await cmd(c2, subject, canvas_id=cid, **fields)
        assert ei.value.code == "forbidden"
    with pytest.raises(ThreadlogError) as ei:
        await query(c2, subjects.GET, canvas_id=cid)
    assert ei.value.code == "forbidden"
    with pytest.raises(ThreadlogError) as ei:
        await cmd(c1, subjects.CREATE, thread_id=tid, canvas_id=cid)
    assert ei.value.code == "already_exists"


BIG = "x" * 2_000
BAD_EDITS: list[tuple[str, list[Any], str]] = [
    ("op on a missing path", [{"op": "remove", "path": "/elements/box/nope"}],
     "patch_path_not_found"),
    ("failing test op", [{"op": "test", "path": "/elements/box/x", "value": 999},
                         {"op": "replace", "path": "/elements/box/x", "value": 1}],
     "patch_test_failed"),
    ("unknown element", [{"op": "replace", "path": "/elements/ghost/x", "value": 1}],
     "unknown_element"),
    ("result breaks the schema", [{"op": "replace", "path": "/elements/box/width",
                                   "value": -5}], "schema_violation"),
    ("unknown element property", [{"op": "add", "path": "/elements/box/colour",
                                   "value": "red"}], "schema_violation"),
    ("bad element id", [{"op": "add", "path": "/elements/a.b", "value": {"type": "x"}}],
     "invalid_id"),
    ("not an op", [{"op": "frobnicate", "path": "/elements/box"}], "invalid_patch"),
    ("op without value", [{"op": "replace", "path": "/elements/box/x"}], "invalid_patch"),
    ("oversize patch", [{"op": "add", "path": f"/elements/t{i}", "value": {"type": "t"}}
                        for i in range(600)], "payload_too_large"),
    ("oversize document", [{"op": "add", "path": f"/elements/t{i}",
                            "value": {"type": "t", "text": BIG * 10}} for i in range(10)],
     "payload_too_large"),
]


@pytest.mark.parametrize(("ops", "code"), [(o, c) for _, o, c in BAD_EDITS],
                         ids=[n for n, _, _ in BAD_EDITS])
async def test_bad_edit_is_refused_with_its_code_and_appends_nothing(
        rt: Runtime, ops: list[Any], code: str) -> None:
    c = rt.client("u1")
    _, cid = await new_canvas(rt)
    before = await rt.store.last_seq()
    doc = (await query(c, subjects.GET, canvas_id=cid))["document"]
    with pytest.raises(ThreadlogError) as ei:
        await cmd(c, subjects.EDIT, canvas_id=cid, base_version=0, ops=ops)
    assert ei.value.code == code, ei.value
    assert await rt.store.last_seq() == before
    assert (await query(c, subjects.GET, canvas_id=cid))["document"] == doc


async def test_bad_documents_and_commands_are_refused(rt: Runtime) -> None:
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    before = await rt.store.last_seq()
    cases = [({"document": {"elements": {"a": {"type": "rect", "width": "wide"}}}},
              "schema_violation"),
             ({"document": {"elements": {"a": {"type": "t", "text": BIG * 30}}}},
              "payload_too_large"),
             ({"canvas_id": "a>b"}, "invalid_input")]
    for fields, code in cases:
        with pytest.raises(ThreadlogError) as ei:
            await cmd(c, subjects.CREATE, thread_id=tid, **fields)
        assert ei.value.code == code
    with pytest.raises(ThreadlogError) as ei:
        await cmd(c, subjects.EDIT, canvas_id="nope", base_version=0,
                  ops=[{"op": "remove", "path": "/elements/a"}])
    assert ei.value.code == "not_found"
    with pytest.raises(ThreadlogError) as ei:
        await cmd(c, subjects.EDIT, canvas_id="nope", base_version=0, ops=[])
    assert ei.value.code == "invalid_input"
    assert await rt.store.last_seq() == before


async def test_deleting_a_thread_purges_its_canvases(rt: Runtime) -> None:
    c = rt.client("u1")
    tid, cid = await new_canvas(rt)
    svc: CanvasService = rt.parts["canvas"]
    svc.directory = type(svc.directory)(rt.store)  # a fresh process: finds it in the log
    assert await rt.store.read(canvas_aggregate(cid)) != []
    await c.delete_thread(tid)
    assert await rt.store.read(canvas_aggregate(cid)) == []
    assert await svc.purge_thread(tid) == []  # nothing left to purge
    with pytest.raises(ThreadlogError) as ei:
        await query(c, subjects.GET, canvas_id=cid)
    assert ei.value.code == "not_found"
