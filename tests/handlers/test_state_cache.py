"""Caches that cannot go stale across processes: an absent aggregate is not cached as the
truth (two handler processes, each with its own cache, on one stream)."""

from __future__ import annotations

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
