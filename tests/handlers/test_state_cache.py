"""Caches that cannot go stale across processes: an absent aggregate is not cached as the
truth (two handler processes, each with its own cache, on one stream)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from events import EventStore, ThreadlogError
from handlers.runner import CommandRunner
from handlers.threads import decisions
from handlers.threads.commands import CreateThread, SaveMessages
from handlers.threads.state import ThreadStateCache


async def test_a_thread_created_by_another_process_is_found_after_a_not_found(
        store: EventStore) -> None:
    a = CommandRunner(store, ThreadStateCache(store), None)
    b = CommandRunner(store, ThreadStateCache(store), None)
    tid = "t-two-procs"

    def save(cid: str) -> SaveMessages:
        return SaveMessages.model_validate({
            "command_id": cid, "user_id": "u1", "thread_id": tid,
            "messages": [{"role": "user", "content": "hi"}]})

    with pytest.raises(ThreadlogError) as ei:  # b sees no thread yet (and caches it)
        await b.run(save("s1"), tid, decisions.save_messages, decisions.replay_save_messages)
    assert ei.value.code == "not_found"
    created = CreateThread(command_id="c1", user_id="u1", thread_id=tid)
    await a.run(created, tid, decisions.create_thread, decisions.replay_thread_result)
    reply = await b.run(save("s2"), tid, decisions.save_messages,
                        decisions.replay_save_messages)
    assert reply.ok and reply.seq == await store.last_seq()


def _save(tid: str, cid: str, text: str = "hi") -> SaveMessages:
    return SaveMessages.model_validate({
        "command_id": cid, "user_id": "u1", "thread_id": tid,
        "messages": [{"role": "user", "content": text}]})


async def _create(runner: CommandRunner, tid: str) -> None:
    await runner.run(CreateThread(command_id=f"c-{tid}", user_id="u1", thread_id=tid), tid,
                     decisions.create_thread, decisions.replay_thread_result)


async def test_concurrent_first_loads_share_one_state(store: EventStore) -> None:
    writer = CommandRunner(store, ThreadStateCache(store), None)
    tid = "t-two-loads"
    await _create(writer, tid)
    cache = ThreadStateCache(store)
    a, b = await asyncio.gather(cache.get(tid), cache.get(tid))
    assert a is b and a.exists


async def test_a_canvas_edit_read_by_a_query_mid_command_is_folded_once(
        store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CI failure itself: a canvas GET catching up while an EDIT is between its
    append and its fold."""
    from handlers.canvas import CanvasService
    from handlers.canvas.commands import CreateCanvas, EditCanvas
    svc = CanvasService(store, ThreadStateCache(store))
    tid = "t-canvas-race"
    await _create(CommandRunner(store, svc.threads, None), tid)
    created = await svc.create(CreateCanvas.model_validate({
        "command_id": "cc", "user_id": "u1", "thread_id": tid, "title": "x",
        "document": {"elements": {"n": {"type": "counter", "data": {"n": 0}}}}}))
    cid = created.result["canvas_id"]  # type: ignore[index]
    real_append = store.append

    async def append_then_read(*args: Any, **kwargs: Any) -> Any:
        res = await real_append(*args, **kwargs)
        await svc.canvases.refresh(cid)
        return res

    monkeypatch.setattr(store, "append", append_then_read)
    for v in range(1, 3):
        reply = await svc.edit(EditCanvas.model_validate({
            "command_id": f"e{v}", "user_id": "u1", "canvas_id": cid, "base_version": v - 1,
            "ops": [{"op": "replace", "path": "/elements/n/data/n", "value": v}]}))
        assert reply.ok
    monkeypatch.setattr(store, "append", real_append)
    st = await svc.canvases.get(cid)
    assert st.version == 2 and st.document["elements"]["n"]["data"]["n"] == 2
    assert [e.version for e in st.index.page(before=None, limit=10)[0]] == [2, 1]


async def test_overlapping_catch_ups_fold_each_canvas_edit_once(store: EventStore) -> None:
    """Two queries catching the same cached canvas up at once read the same new edit;
    the second must not fold it again."""
    from handlers.canvas import CanvasService
    from handlers.canvas.commands import CreateCanvas, EditCanvas
    reader = CanvasService(store, ThreadStateCache(store))
    writer = CanvasService(store, ThreadStateCache(store))
    tid = "t-canvas-overlap"
    await _create(CommandRunner(store, writer.threads, None), tid)
    created = await writer.create(CreateCanvas.model_validate({
        "command_id": "cc", "user_id": "u1", "thread_id": tid, "title": "x",
        "document": {"elements": {}}}))
    cid = created.result["canvas_id"]  # type: ignore[index]
    await reader.canvases.get(cid)
    await writer.edit(EditCanvas.model_validate({
        "command_id": "e1", "user_id": "u1", "canvas_id": cid, "base_version": 0,
        "ops": [{"op": "add", "path": "/elements/a", "value": {"type": "dot"}}]}))
    a, b = await asyncio.gather(reader.canvases.refresh(cid), reader.canvases.refresh(cid))
    assert a is b and a.version == 1 and list(a.document["elements"]) == ["a"]
