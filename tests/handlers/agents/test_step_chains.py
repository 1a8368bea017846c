"""``CommandRunner.apply_chain`` (a generation step's events, ``handlers.agents.steps``):
a chain cut short is finished by applying the command again, a complete one appends
nothing, and a thread holding other events under the command id is a conflict."""

from __future__ import annotations

import pytest

from events import Aggregate, MessageSaved, TextPart, ThreadlogError
from tests.conftest import RuntimeFactory


def saved(tid: str, mid: str, order: int) -> MessageSaved:
    return MessageSaved(message_id=mid, thread_id=tid, order=order, role="user",
                        content=[TextPart(text=mid)])


async def test_a_chain_cut_short_is_finished_and_a_whole_one_appends_nothing(
        runtime_factory: RuntimeFactory) -> None:
    async with runtime_factory() as rt:
        tid = (await rt.client("u1").create_thread()).value["thread_id"]
        runner = rt.handlers.generator.runner
        evs = [saved(tid, f"m{i}", i + 1) for i in range(3)]
        v1 = await runner.apply_chain(tid, "c-s1", "u1", evs[:1])  # then a crash
        v3 = await runner.apply_chain(tid, "c-s1", "u1", evs)
        assert await runner.apply_chain(tid, "c-s1", "u1", evs) == v3 > v1
        recs = await rt.store.read(Aggregate.thread(tid))
        assert [r.event for r in recs if r.type == "message_saved"] == evs
        assert [r.envelope.causation_id for r in recs[-3:]] == ["c-s1"] * 3


async def test_other_events_under_the_command_id_are_a_conflict(
        runtime_factory: RuntimeFactory) -> None:
    async with runtime_factory() as rt:
        tid = (await rt.client("u1").create_thread()).value["thread_id"]
        runner = rt.handlers.generator.runner
        v = await runner.apply_chain(tid, "c-s3", "u1", [saved(tid, "theirs", 1)])
        with pytest.raises(ThreadlogError) as err:
            await runner.apply_chain(tid, "c-s3", "u1",
                                     [saved(tid, "ours", 1), saved(tid, "next", 2)])
        assert err.value.code == "conflict"
        assert (await rt.store.version(Aggregate.thread(tid))) == v
