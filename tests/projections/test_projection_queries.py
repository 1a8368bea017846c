"""Typed queries over request/reply: ownership, pagination, filters, read-your-writes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from events import Aggregate, EventStore, MessageStatusChanged, Usage, UsageRecorded, new_id
from projections.projector import Projector
from projections.queries import reads
from projections.queries.models import MessagesList, ThreadsList

from .conftest import Ask
from .factories import create_thread, save_message


async def test_threads_get_checks_ownership(store: EventStore, ask: Ask) -> None:
    thread, seq = await create_thread(store, "alice", title="mine")
    ok = await ask("threads.get", {"user_id": "alice", "thread_id": thread, "min_seq": seq})
    assert ok.ok and ok.result["title"] == "mine" and ok.seq is not None and ok.seq >= seq
    other = await ask("threads.get", {"user_id": "bob", "thread_id": thread})
    assert not other.ok and other.error and other.error.code == "forbidden"
    missing = await ask("threads.get", {"user_id": "alice", "thread_id": new_id()})
    assert missing.error and missing.error.code == "not_found"


async def test_invalid_input_names_the_fields(ask: Ask) -> None:
    r = await ask("threads.list", {"user_id": "a" * 300, "limit": 0})
    assert r.error and r.error.code == "invalid_input"
    locs = {tuple(e["loc"]) for e in r.error.details["errors"]}
    assert ("user_id",) in locs and ("limit",) in locs
    bad_json = await ask("threads.list", b"{nope")
    assert bad_json.error and bad_json.error.code == "invalid_json"
    bad_cursor = await ask("threads.list", {"user_id": "a", "cursor": "zzz"})
    assert bad_cursor.error and bad_cursor.error.code == "invalid_input"


async def test_min_seq_beyond_the_log_times_out_saying_how_far_behind(
        store: EventStore, ask: Ask, projector: Projector) -> None:
    _, seq = await create_thread(store, "alice")
    r = await ask("threads.list", {"user_id": "alice", "min_seq": seq + 100, "wait_s": 0.2})
    assert r.error and r.error.code == "timeout"
    assert r.error.details["min_seq"] == seq + 100
    assert r.error.details["checkpoint"] == r.error.details["min_seq"] - r.error.details["behind"]


async def test_read_your_writes(store: EventStore, ask: Ask) -> None:
    thread, _ = await create_thread(store, "alice")
    for i in range(30):
        mid, seq = await save_message(store, "alice", thread, i, text=f"m{i}")
        r = await ask("messages.get", {"user_id": "alice", "message_ids": [mid],
                                       "min_seq": seq})
        assert r.ok, r.error
        assert r.result["items"][0]["text"] == f"m{i}"


async def test_messages_get_by_ids_forbidden_and_missing(store: EventStore, ask: Ask) -> None:
    mine, _ = await create_thread(store, "alice")
    theirs, _ = await create_thread(store, "bob")
    m1, _ = await save_message(store, "alice", mine, 0)
    m2, _ = await save_message(store, "alice", mine, 1)
    m3, seq = await save_message(store, "bob", theirs, 0)
    r = await ask("messages.get", {"user_id": "alice", "message_ids": [m2, m1], "min_seq": seq})
    assert [m["message_id"] for m in r.result["items"]] == [m2, m1]
    r = await ask("messages.get", {"user_id": "alice", "message_ids": [m1, m3]})
    assert r.error and r.error.code == "forbidden"
    r = await ask("messages.get", {"user_id": "alice", "message_ids": [m1, "nope"]})
    assert r.error and r.error.code == "not_found" and r.error.details["missing"] == ["nope"]


async def test_messages_list_filters(store: EventStore, ask: Ask) -> None:
    thread, _ = await create_thread(store, "alice")
    plain, _ = await save_message(store, "alice", thread, 0)
    tool, _ = await save_message(store, "alice", thread, 1, role="assistant", tool=True)
    pending, _ = await save_message(store, "alice", thread, 2, role="assistant",
                                    status="pending")
    r = await store.append(Aggregate.thread(thread), [MessageStatusChanged(
        message_id=plain, thread_id=thread, status="failed", error="x")])
    base = {"user_id": "alice", "thread_id": thread, "min_seq": r.last_seq}
    everything = await ask("messages.list", base)
    assert [m["message_id"] for m in everything.result["items"]] == [pending, tool, plain]
    no_tools = await ask("messages.list", {**base, "exclude_tool_messages": True})
    assert [m["message_id"] for m in no_tools.result["items"]] == [pending, plain]
    failed = await ask("messages.list", {**base, "statuses": ["failed"]})
    assert [m["message_id"] for m in failed.result["items"]] == [plain]
    assert failed.result["items"][0]["error"] == "x"
    other = await ask("messages.list", {**base, "user_id": "bob"})
    assert other.error and other.error.code == "forbidden"


async def test_usage_summary_by_period(store: EventStore, ask: Ask) -> None:
    from datetime import UTC, datetime

    seq = 0
    for month, cost in ((1, 1.0), (1, 2.0), (2, 4.0)):
        ev = UsageRecorded(call_id=new_id(), user_id="carol", model="m", cost=cost,
                           usage=Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3),
                           at=datetime(2025, month, 15, tzinfo=UTC))
        seq = (await store.append(Aggregate("usage", "carol"), [ev])).last_seq
    jan = await ask("usage.summary", {"user_id": "carol", "period": "2025-01", "min_seq": seq})
    assert jan.result["totals"]["cost"] == 3.0 and jan.result["totals"]["total_tokens"] == 6
    assert jan.result["totals"]["calls"] == 2
    every = await ask("usage.summary", {"user_id": "carol"})
    assert every.result["totals"]["cost"] == 7.0 and len(every.result["by_model"]) == 2
    nobody = await ask("usage.summary", {"user_id": "dave"})
    assert nobody.result["totals"]["calls"] == 0
    bad = await ask("usage.summary", {"user_id": "carol", "period": "2025-13"})
    assert bad.error and bad.error.code == "invalid_input"


async def test_status_reports_checkpoint_and_views(store: EventStore, ask: Ask) -> None:
    _, seq = await create_thread(store, "alice")
    r = await ask("status", {"user_id": "op", "min_seq": seq})
    assert r.result["checkpoint"] >= seq and r.result["lag"] == 0
    assert {v["view"] for v in r.result["views"]} >= {"threads", "messages", "tool_calls",
                                                      "usage"}


async def test_pagination_returns_every_row_once_in_order(
        store: EventStore, projector: Projector, ask: Ask) -> None:
    user = "pager"
    threads = []
    for _ in range(23):
        threads.append((await create_thread(store, user))[0])
    big = threads[0]
    seq = 0
    for order in range(9):
        for step in range(3 if order % 2 else 1):
            _, seq = await save_message(store, user, big, order, step=step,
                                        tool=(order + step) % 3 == 0)
    await projector.wait_for(seq, timeout=10)
    cur = projector.cursor()
    all_msgs = reads.messages_list(cur, MessagesList(user_id=user, thread_id=big,
                                                     limit=500))["items"]
    expected_msgs = sorted(all_msgs, key=lambda m: (m["order"], m["step_order"], m["seq"]),
                           reverse=True)
    assert all_msgs == expected_msgs and len(all_msgs) == 17

    @settings(max_examples=25, deadline=None)
    @given(size=st.integers(1, 30), order=st.sampled_from(["asc", "desc"]),
           exclude_tools=st.booleans())
    def pages_cover_everything(size: int, order: str, exclude_tools: bool) -> None:
        got, cursor = [], None
        while True:
            page = reads.threads_list(cur, ThreadsList(user_id=user, limit=size, cursor=cursor,
                                                       order=order))  # type: ignore[arg-type]
            assert len(page["items"]) <= size
            got += [t["thread_id"] for t in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert got == (threads if order == "asc" else threads[::-1])
        msgs, cursor = [], None
        while True:
            page = reads.messages_list(cur, MessagesList(
                user_id=user, thread_id=big, limit=size, cursor=cursor,
                exclude_tool_messages=exclude_tools))
            msgs += [m["message_id"] for m in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert msgs == [m["message_id"] for m in expected_msgs
                        if not (exclude_tools and m["is_tool"])]

    pages_cover_everything()
    # and once end to end over NATS
    first = await ask("threads.list", {"user_id": user, "limit": 20, "order": "asc"})
    second = await ask("threads.list", {"user_id": user, "limit": 20, "order": "asc",
                                        "cursor": first.result["next_cursor"]})
    assert [t["thread_id"] for t in first.result["items"] + second.result["items"]] == threads
    assert second.result["next_cursor"] is None
