"""Budgets: a generation that would pass the user's spend limit is refused before the
model is called and before anything is appended; limit and spend are queryable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from events import Aggregate, EventStore, ThreadlogError, Usage, UsageRecorded, new_id
from events.envelope import EventEnvelope
from events.invoice_events import SpendLimitSet, period_of
from handlers.agents.definition import Agent
from handlers.billing import subjects
from handlers.billing.spend_ledger import SpendLedger, utc_now
from handlers.llm.call_settings import NO_BACKOFF, CallSettings
from handlers.llm.scripted import Reply, scripted
from handlers.llm.usage_and_cost import ModelPrice
from tests.conftest import RuntimeFactory
from threadlog.runtime import Runtime

PRICE = ModelPrice(input=0.001, output=0.002)


@pytest.fixture
async def rt(runtime_factory: RuntimeFactory) -> AsyncIterator[Runtime]:
    """Handlers with billing (the budget check runs first in every generation)."""
    model = "b" + new_id()[:8]
    agent = Agent(name="clerk", model=f"scripted/{model}",
                  call_settings=CallSettings(max_retries=0, backoff=NO_BACKOFF, max_tokens=100))
    async with runtime_factory(agents=[agent], prices={agent.model: PRICE}) as r:
        r.parts["model"] = model
        r.parts["billing"] = r.handlers.billing
        yield r


async def spend(rt: Runtime, user: str, cost: float, at: datetime | None = None) -> None:
    ev = UsageRecorded(call_id=new_id(), user_id=user, model="gpt-4o", usage=Usage(),
                       cost=cost, at=at)
    await rt.store.append(Aggregate("usage", user), [ev])


async def test_generation_over_the_limit_is_refused_and_appends_nothing(rt: Runtime) -> None:
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    await c.command(subjects.SET_SPEND_LIMIT, limit_usd=1.0)
    await spend(rt, "u1", 1.0)
    before = await rt.store.last_seq()
    with pytest.raises(ThreadlogError) as ei:
        await c.generate_text("clerk", tid, "hi")
    assert ei.value.code == "budget_exceeded"
    assert ei.value.details["limit_usd"] == 1.0 and ei.value.details["spent_usd"] == 1.0
    assert await rt.store.last_seq() == before
    assert scripted.requests(rt.parts["model"]) == []


async def test_the_estimate_counts_prompt_tokens_and_max_tokens(rt: Runtime) -> None:
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    # 100 completion tokens at 0.002 is 0.2 USD alone: a 0.15 limit refuses the call.
    await c.command(subjects.SET_SPEND_LIMIT, limit_usd=0.15)
    with pytest.raises(ThreadlogError) as ei:
        await c.generate_text("clerk", tid, "hello there")
    assert ei.value.code == "budget_exceeded"
    estimate = ei.value.details["estimate_usd"]
    assert 0.2 < estimate < 0.25 and ei.value.details["spent_usd"] == 0
    await c.command(subjects.SET_SPEND_LIMIT, limit_usd=1.0)
    scripted.script(rt.parts["model"], [Reply.text("fine")])
    assert (await c.generate_text("clerk", tid, "hello there")).value["text"] == "fine"


async def test_limit_and_spend_so_far_are_queryable(rt: Runtime) -> None:
    c = rt.client("u2")
    status = (await c.query(subjects.BUDGET_STATUS)).value
    assert status["limit_usd"] is None and status["spent_usd"] == 0
    await c.command(subjects.SET_SPEND_LIMIT, limit_usd=5.0)
    await spend(rt, "u2", 1.25)
    await spend(rt, "u2", 0.5, at=datetime(2020, 1, 31, 23, 59, 59, tzinfo=UTC))
    status = (await c.query(subjects.BUDGET_STATUS)).value
    assert (status["limit_usd"], status["spent_usd"], status["remaining_usd"]) == (5.0, 1.25,
                                                                                   3.75)
    old = (await c.query(subjects.BUDGET_STATUS, period="2020-01")).value
    assert old["spent_usd"] == 0.5 and old["period"] == "2020-01"
    cleared = (await c.command(subjects.SET_SPEND_LIMIT, limit_usd=None)).value
    assert cleared["limit_usd"] is None


async def test_default_limit_applies_until_a_user_limit_is_set(rt: Runtime) -> None:
    ledger = rt.parts["billing"].ledger
    ledger.default_limit_usd = 0.0
    c = rt.client("u3")
    tid = (await c.create_thread()).value["thread_id"]
    with pytest.raises(ThreadlogError) as ei:
        await c.generate_text("clerk", tid, "hi")
    assert ei.value.code == "budget_exceeded"
    await c.command(subjects.SET_SPEND_LIMIT, limit_usd=10.0)
    scripted.script(rt.parts["model"], [Reply.text("ok")])
    assert (await c.generate_text("clerk", tid, "hi")).value["text"] == "ok"


async def test_no_limit_costs_no_estimate(rt: Runtime) -> None:
    guard = rt.parts["billing"].guard
    status = await guard.check_budget("nobody", "unknown/model", [{"role": "user",
                                                                    "content": "x"}], None)
    assert status is None or status.limit_usd is None


async def test_bad_query_and_negative_limit_are_invalid_input(rt: Runtime) -> None:
    c = rt.client("u4")
    with pytest.raises(ThreadlogError) as ei:
        await c.command(subjects.SET_SPEND_LIMIT, limit_usd=-1)
    assert ei.value.code == "invalid_input"
    with pytest.raises(ThreadlogError) as ei:
        await c.query(subjects.BUDGET_STATUS, period="January")
    assert ei.value.code == "invalid_input"


async def test_the_ledger_folds_its_own_usage_append_only_when_nothing_came_between(
        store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = SpendLedger(store)
    agg = Aggregate("usage", "u9")

    def usage(cost: float) -> EventEnvelope:
        ev = UsageRecorded(call_id=new_id(), user_id="u9", model="m", usage=Usage(), cost=cost)
        return store.envelopes(agg, [ev])[0]

    reads = 0
    real_read = store.read

    async def counted_read(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return await real_read(*args, **kwargs)

    assert (await ledger.user("u9")).after_seq == 0
    first = await ledger.append_usage("u9", usage(0.25))
    fold = await ledger.user("u9")  # already folded: the read finds nothing new
    assert (fold.after_seq, fold.spent_usd(period_of(utc_now()))) == (first.last_seq, 0.25)
    monkeypatch.setattr(store, "read", counted_read)
    await store.append(agg, [usage(0.5)])  # another writer comes first...
    third_env = usage(1.0)
    third = await ledger.append_usage("u9", third_env)  # ...so this one is not folded
    assert not third.duplicate and ledger._users["u9"].after_seq == first.last_seq
    again = await ledger.append_usage("u9", third_env)  # a re-append is a duplicate
    assert again.duplicate and again.last_seq == third.last_seq
    status = await ledger.status("u9")
    assert status.spent_usd == 1.75 and reads == 1  # each event counted once
    assert ledger._users["u9"].after_seq == third.last_seq


async def test_a_user_without_a_limit_is_checked_without_reading_the_log(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """No default and no limit of their own: the check reads nothing. A limit another
    process sets (appended straight to the log here) reaches the limit watcher, and the
    next check reads the spend and refuses."""
    guard, ledger = rt.parts["billing"].guard, rt.parts["billing"].ledger
    reads: list[Aggregate] = []
    real_read = rt.store.read

    async def counting_read(agg: Aggregate, *a: Any, **kw: Any) -> Any:
        reads.append(agg)
        return await real_read(agg, *a, **kw)

    monkeypatch.setattr(rt.store, "read", counting_read)
    msgs = [{"role": "user", "content": "hi"}]
    assert await guard.check_budget("free-user", "gpt-4o", msgs, 10) is None
    assert reads == []
    await spend(rt, "free-user", 5.0)
    res = await rt.store.append(Aggregate("usage", "free-user"),
                                [SpendLimitSet(user_id="free-user", limit_usd=1.0)])
    await ledger.limits_applied(res.last_seq)
    with pytest.raises(ThreadlogError) as ei:
        await guard.check_budget("free-user", "gpt-4o", msgs, 10)
    assert ei.value.code == "budget_exceeded" and reads
