"""One slow request never delays another user's (commands and queries are served
concurrently; per-aggregate order is the log's)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from events import ThreadlogError
from tests.conftest import RuntimeFactory
from threadlog.parts import serve_parts
from threadlog.runtime import Runtime


@pytest.fixture
async def rt(runtime_factory: RuntimeFactory) -> AsyncIterator[Runtime]:
    async with runtime_factory(extra_parts=serve_parts()) as r:
        yield r


async def timed(coro: object) -> float:
    start = time.perf_counter()
    await coro  # type: ignore[misc]
    return time.perf_counter() - start


async def test_queries_waiting_on_an_unreachable_min_seq_do_not_delay_another_user(
        rt: Runtime) -> None:
    alice, bob = rt.client("alice"), rt.client("bob")
    res = await bob.create_thread(title="bob")
    waiting = [asyncio.ensure_future(alice.query("query.threads.list", min_seq=res.seq + 10_000,
                                                 wait_s=4)) for _ in range(4)]
    elapsed = await timed(bob.query("query.threads.list", min_seq=res.seq))
    assert elapsed < 1.0, f"bob waited {elapsed:.2f}s behind alice's stuck queries"
    for w in waiting:
        with pytest.raises(ThreadlogError) as ei:
            await w
        assert ei.value.code == "timeout"


async def test_heavy_sql_does_not_delay_a_users_read(runtime_factory: RuntimeFactory) -> None:
    async with runtime_factory(extra_parts=serve_parts(), sql_time_limit_s=1.5) as rt:
        await heavy_sql_then_a_read(rt)


async def heavy_sql_then_a_read(rt: Runtime) -> None:
    op, bob = rt.client("ops"), rt.client("bob")
    res = await bob.create_thread(title="bob")
    await bob.query("query.threads.list", min_seq=res.seq)
    heavy = ("SELECT count(*) FROM range(100000) a, range(100000) b "
             "WHERE (a.range * b.range) % 97 = 1")  # 10^10 pairs: stopped by the time limit
    running = [asyncio.ensure_future(op.request("ops.sql", {"user_id": "ops", "sql": heavy}))
               for _ in range(4)]
    await asyncio.sleep(0)  # let them be sent first (ordering, not a wait for state)
    elapsed = await timed(bob.query("query.threads.list"))
    assert elapsed < 1.0, f"bob's read waited {elapsed:.2f}s behind heavy SQL"
    for r in running:
        with pytest.raises(ThreadlogError) as ei:
            await r
        assert ei.value.code in ("sql_timeout", "sql_memory_limit", "timeout")


async def test_a_slow_command_does_not_delay_another_users_command(rt: Runtime) -> None:
    alice, bob = rt.client("alice"), rt.client("bob")
    tid = (await alice.create_thread(title="a")).value["thread_id"]
    await alice.delete_thread(tid, wait=False)
    slow = [asyncio.ensure_future(alice.deletions_pending(wait_s=3)) for _ in range(4)]
    elapsed = await timed(bob.create_thread(title="b"))
    assert elapsed < 1.0, f"bob's command waited {elapsed:.2f}s"
    await asyncio.gather(*slow)


async def test_one_user_cannot_hold_every_waiting_slot(rt: Runtime) -> None:
    alice, bob = rt.client("alice"), rt.client("bob")
    tid = (await alice.create_thread(title="a")).value["thread_id"]
    await alice.delete_thread(tid, wait=False)
    res = await bob.create_thread(title="b")
    waits = [asyncio.ensure_future(alice.query("query.threads.list",
                                               min_seq=res.seq + 10_000, wait_s=3))
             for _ in range(20)]
    codes = []
    for w in waits:
        try:
            await w
        except ThreadlogError as exc:
            codes.append(exc.code)
    assert codes.count("rate_limited") >= 12 and codes.count("timeout") <= 8
