"""Failures you can read back (issue 13, part 5): a generation's error reply names the
failed message and the stream sequence of its finalization, so a read right after (with
``min_seq``) shows the message ``failed`` with its error code beside the text."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from events import Aggregate, MessageFinalized, ThreadlogError, new_id
from handlers.agents.definition import Agent
from handlers.llm.call_settings import NO_BACKOFF, CallSettings
from handlers.llm.scripted import Reply, scripted
from tests.conftest import RuntimeFactory
from threadlog.parts import projector_part
from threadlog.runtime import Runtime


@pytest.fixture
async def rt_and_model(runtime_factory: RuntimeFactory
                       ) -> AsyncIterator[tuple[Runtime, str]]:
    model = "err" + new_id()[:8]
    agent = Agent(name="talker", model=f"scripted/{model}",
                  call_settings=CallSettings(max_retries=0, backoff=NO_BACKOFF))
    async with runtime_factory(agents=[agent], extra_parts=[projector_part]) as rt:
        yield rt, model


async def failed_reply(rt: Runtime, tid: str, **extra: Any) -> ThreadlogError:
    with pytest.raises(ThreadlogError) as caught:
        await rt.client("u1").generate_text("talker", tid, "hello", **extra)
    return caught.value


async def test_a_429_reply_carries_message_id_and_seq_and_the_read_shows_the_code(
        rt_and_model: tuple[Runtime, str]) -> None:
    rt, model = rt_and_model
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    scripted.script(model, [Reply.error(429, "slow down")])
    err = await failed_reply(rt, tid)
    assert err.code == "rate_limited"
    mid, seq = err.details["message_id"], err.details["seq"]
    assert isinstance(mid, str) and isinstance(seq, int)

    page = await c.query("query.messages.list", min_seq=seq, thread_id=tid)
    failed = [m for m in page.value["items"] if m["message_id"] == mid]
    assert [m["status"] for m in failed] == ["failed"]
    assert "slow down" in failed[0]["error"]
    rows = await c.query("ops.sql", min_seq=seq, sql=(
        "SELECT status, error_code FROM messages "
        f"WHERE thread_id = '{tid}' AND message_id = '{mid}'"))
    assert rows.value["rows"] == [["failed", "rate_limited"]]

    [final] = [r for r in await rt.store.read(Aggregate.thread(tid))
               if isinstance(r.event, MessageFinalized)]
    assert final.seq == seq and final.event.error_code == "rate_limited"


async def test_a_streamed_failure_and_a_resent_command_answer_the_same_way(
        rt_and_model: tuple[Runtime, str]) -> None:
    rt, model = rt_and_model
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    scripted.script(model, [Reply.error(500, "boom", after_text="partial answer")])
    cid = new_id()
    stream = c.stream_text("talker", tid, "hello", command_id=cid)
    with pytest.raises(ThreadlogError) as caught:
        _ = [d async for d in stream]
    first = caught.value
    assert first.code == "provider_error"
    assert {"message_id", "seq"} <= set(first.details)
    again = await failed_reply(rt, tid, command_id=cid)  # answered from the record
    assert again.code == first.code
    assert again.details["message_id"] == first.details["message_id"]
    assert again.details["seq"] >= first.details["seq"]
    assert len(scripted.requests(model)) == 1


async def test_a_deadline_failure_stores_its_code(rt_and_model: tuple[Runtime, str]) -> None:
    rt, model = rt_and_model
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    scripted.script(model, [Reply.hanging()])
    err = await failed_reply(rt, tid, deadline_s=0.3)
    assert err.code == "timeout" and err.details["deadline_s"] == 0.3
    rows = await c.query("ops.sql", min_seq=err.details["seq"], sql=(
        f"SELECT status, error_code FROM messages WHERE thread_id = '{tid}' "
        f"AND message_id = '{err.details['message_id']}'"))
    assert rows.value["rows"] == [["failed", "timeout"]]


async def test_a_failure_while_building_the_context_fails_the_pending_message(
        runtime_factory: RuntimeFactory) -> None:
    def broken(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise RuntimeError("context store unreachable")

    model = "ctx" + new_id()[:8]
    agent = Agent(name="talker", model=f"scripted/{model}", context_handler=broken)
    async with runtime_factory(agents=[agent]) as rt:
        tid = (await rt.client("u1").create_thread()).value["thread_id"]
        err = await failed_reply(rt, tid)
        assert err.code == "generation_failed" and "unreachable" in err.message
        [final] = [r for r in await rt.store.read(Aggregate.thread(tid))
                   if isinstance(r.event, MessageFinalized)]
        assert (final.seq, final.event.message_id) == (err.details["seq"],
                                                        err.details["message_id"])
        assert (final.event.status, final.event.error_code) == ("failed", "generation_failed")
        assert scripted.requests(model) == []
