"""Command subjects over a real nats-server: replies, idempotency, bad input."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from events import Aggregate, ThreadlogError
from handlers import Client, subjects
from tests.conftest import RuntimeFactory
from threadlog.runtime import Runtime


@pytest.fixture
async def rt(runtime_factory: RuntimeFactory) -> AsyncIterator[Runtime]:
    async with runtime_factory(max_command_bytes=64_000) as r:
        yield r


async def count(rt: Runtime) -> int:
    return await rt.store.last_seq()


async def raw(rt: Runtime, subject: str, body: bytes) -> dict:
    msg = await rt.nc.request(subject.replace("{user_id}", "u1"), body, timeout=5)
    return json.loads(msg.data)


async def test_create_thread_replies_with_id_and_sequence(rt: Runtime) -> None:
    res = await rt.client("u1").create_thread(title="hello")
    assert res.seq == await count(rt)
    events = await rt.store.read(Aggregate.thread(res.value["thread_id"]))
    assert [e.type for e in events] == ["thread_created"]
    assert events[0].envelope.user_id == "u1"


async def test_same_command_id_appends_nothing_and_returns_first_result(rt: Runtime) -> None:
    c = rt.client("u1")
    first = await c.create_thread(title="a", command_id="cmd-1")
    again = await c.create_thread(title="a", command_id="cmd-1")
    assert again == first
    assert await count(rt) == 1
    msgs = [{"role": "user", "content": "hi"}, {"role": "user", "content": "there"}]
    tid = first.value["thread_id"]
    s1 = await c.save_messages(tid, msgs, command_id="cmd-2")
    s2 = await c.save_messages(tid, msgs, command_id="cmd-2")
    assert s1 == s2 and await count(rt) == 3


async def test_resent_command_after_lost_reply_log_is_answered_from_events(rt: Runtime) -> None:
    """The process died after appending, before recording the reply: the re-sent command
    finds its own events in the thread and appends nothing."""
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    first = await c.save_message(tid, "user", "hi", command_id="lost-1")
    await rt.handlers.runner.command_log.kv.purge("u1.lost-1")  # type: ignore[union-attr]
    rt.handlers.states.forget(tid)
    again = await c.save_message(tid, "user", "hi", command_id="lost-1")
    assert again.value == first.value
    assert await count(rt) == 2


async def test_command_id_reused_with_other_body_is_refused(rt: Runtime) -> None:
    c = rt.client("u1")
    await c.create_thread(title="a", command_id="cmd-x")
    with pytest.raises(ThreadlogError) as ei:
        await c.create_thread(title="b", command_id="cmd-x")
    assert ei.value.code == "command_id_reused"


async def test_orders_and_step_orders_follow_convex_numbering(rt: Runtime) -> None:
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    p = (await c.save_message(tid, "user", "q1")).value["messages"][0]
    r = (await c.save_messages(tid, [
        {"role": "assistant", "content": "step", "prompt_message_id": p["message_id"]},
        {"role": "assistant", "content": "answer", "prompt_message_id": p["message_id"]},
    ])).value["messages"]
    q2 = (await c.save_message(tid, "user", "q2")).value["messages"][0]
    assert (p["order"], p["step_order"]) == (0, 0)
    assert [(m["order"], m["step_order"]) for m in r] == [(0, 1), (0, 2)]
    assert (q2["order"], q2["step_order"]) == (1, 0)


BAD_INPUTS = [
    (subjects.CREATE_THREAD, b"{not json", "invalid_json"),
    (subjects.CREATE_THREAD, b"[1, 2]", "invalid_input"),
    (subjects.CREATE_THREAD, b'{"user_id": "u1"}', "invalid_input"),
    (subjects.CREATE_THREAD, b'{"command_id": "c", "user_id": "u.1"}', "forbidden"),
    (subjects.CREATE_THREAD, b'{"command_id": "c", "user_id": "u1", "thread_id": "a>b"}',
     "invalid_input"),
    (subjects.CREATE_THREAD, b'{"command_id": "c", "user_id": "u1", "bogus": 1}',
     "invalid_input"),
    (subjects.SAVE_MESSAGES, b'{"command_id": "c", "user_id": "u1", "thread_id": "nope",'
                             b' "messages": [{"role": "user", "content": "x"}]}', "not_found"),
    (subjects.SAVE_MESSAGES, b'{"command_id": "c", "user_id": "u1", "thread_id": "t",'
                             b' "messages": []}', "invalid_input"),
    (subjects.SAVE_MESSAGES, b'{"command_id": "c", "user_id": "u1", "thread_id": "t",'
                             b' "messages": [{"role": "robot", "content": "x"}]}',
     "invalid_input"),
    (subjects.UPDATE_THREAD, b'{"command_id": "c", "user_id": "u1", "thread_id": "nope"}',
     "not_found"),
    (subjects.CREATE_THREAD, b'{"command_id": "c", "user_id": "u1", "title": "'
                             + b"x" * 70_000 + b'"}', "payload_too_large"),
]


@pytest.mark.parametrize(("subject", "body", "code"), BAD_INPUTS,
                         ids=[f"{s}-{c}-{i}" for i, (s, _, c) in enumerate(BAD_INPUTS)])
async def test_bad_input_gets_error_code_and_appends_nothing(
        rt: Runtime, subject: str, body: bytes, code: str) -> None:
    before = await count(rt)
    reply = await raw(rt, subject, body)
    assert reply["ok"] is False
    assert reply["error"]["code"] == code, reply
    assert reply["error"]["message"]
    assert isinstance(reply["error"]["details"], dict)
    assert await count(rt) == before


async def test_other_users_thread_is_forbidden_and_appends_nothing(rt: Runtime) -> None:
    tid = (await rt.client("alice").create_thread()).value["thread_id"]
    before = await count(rt)
    bob = rt.client("bob")
    for call in (bob.save_message(tid, "user", "hi"), bob.update_thread(tid, title="x"),
                 bob.delete_thread(tid)):
        with pytest.raises(ThreadlogError) as ei:
            await call
        assert ei.value.code == "forbidden"
    assert await count(rt) == before


async def test_unknown_prompt_message_is_not_found(rt: Runtime) -> None:
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    with pytest.raises(ThreadlogError) as ei:
        await c.save_message(tid, "assistant", "x", prompt_message_id="nope")
    assert ei.value.code == "not_found"


async def test_delete_thread_purges_content_and_keeps_tombstone(rt: Runtime) -> None:
    c = rt.client("u1")
    tid = (await c.create_thread(title="secret")).value["thread_id"]
    await c.save_message(tid, "user", "my secret")
    res = await c.delete_thread(tid)
    events = await rt.store.read(Aggregate.thread(tid))
    assert [e.type for e in events] == ["thread_deleted"]
    assert events[0].seq == res.seq
    with pytest.raises(ThreadlogError) as ei:
        await c.save_message(tid, "user", "again")
    assert ei.value.code == "not_found"


async def test_no_handler_running_is_a_clear_unavailable_error(nc) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ThreadlogError) as ei:
        await Client(nc, user_id="u1").create_thread()
    assert ei.value.code == "unavailable"


async def test_delete_user_data_removes_every_thread_but_keeps_usage(rt: Runtime) -> None:
    from events import Usage, UsageRecorded

    alice, bob = rt.client("alice"), rt.client("bob")
    a1 = (await alice.create_thread()).value["thread_id"]
    a2 = (await alice.create_thread()).value["thread_id"]
    b1 = (await bob.create_thread()).value["thread_id"]
    for tid in (a1, a2):
        await alice.save_message(tid, "user", "private")
    await rt.store.append(Aggregate("usage", "alice"), [UsageRecorded(
        call_id="c1", user_id="alice", thread_id=a1, model="m", usage=Usage(total_tokens=3))])
    res = await alice.delete_user_data()
    assert sorted(res.value["threads_deleted"]) == sorted([a1, a2])
    for tid in (a1, a2):
        assert [e.type for e in await rt.store.read(Aggregate.thread(tid))] == [
            "thread_deleted"]
    assert len(await rt.store.read(Aggregate.thread(b1))) == 1
    assert len(await rt.store.read(Aggregate("usage", "alice"))) == 1
    again = await alice.delete_user_data()  # idempotent: nothing left to delete
    assert again.value["user_id"] == "alice"
    assert len(await rt.store.read(Aggregate.thread(a1))) == 1
