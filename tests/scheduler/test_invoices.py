"""Invoices: computed from the usage view, issued once per (user, period) whoever runs
them, monthly by APScheduler's cron (day 2, 00:00 UTC), caught up at start-up."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pytest
import time_machine

from events import EventStore, UsageRecorded
from events.invoice_events import InvoiceIssued, invoice_aggregate, period_of, period_start
from scheduler.invoice_computation import compute_invoices, uninvoiced_periods
from scheduler.invoice_scheduler import RUN_SUBJECT, InvoiceScheduler, monthly_trigger

USAGE_DDL = """CREATE TABLE IF NOT EXISTS usage (event_id VARCHAR, call_id VARCHAR,
  user_id VARCHAR, thread_id VARCHAR, agent_name VARCHAR, model VARCHAR, provider VARCHAR,
  kind VARCHAR, prompt_tokens BIGINT, completion_tokens BIGINT, total_tokens BIGINT,
  reasoning_tokens BIGINT, cached_input_tokens BIGINT, cache_write_tokens BIGINT,
  cost DOUBLE, "at" TIMESTAMPTZ, billing_period DATE, seq BIGINT)"""


def add_usage(con: duckdb.DuckDBPyConnection, user: str, model: str, day: date,
              prompt: int, completion: int, cost: float) -> None:
    """One row of the ``usage`` view's documented schema."""
    con.execute(USAGE_DDL)
    con.execute("INSERT INTO usage (user_id, model, prompt_tokens, completion_tokens, "
                "total_tokens, reasoning_tokens, cached_input_tokens, cache_write_tokens, "
                "cost, billing_period) VALUES (?, ?, ?, ?, ?, 0, 0, 0, ?, ?)",
                [user, model, prompt, completion, prompt + completion, cost,
                 day.replace(day=1)])


async def usage_table(con: duckdb.DuckDBPyConnection, store: EventStore) -> None:
    """Fill a ``usage`` table from the log's usage events (the usage view's rule: period of
    ``at``, else of ``occurred_at``, in UTC)."""
    con.execute(USAGE_DDL)
    async for rec in store.replay(subject="events.usage.>"):
        ev = rec.event
        if isinstance(ev, UsageRecorded):
            when = ev.at or rec.envelope.occurred_at
            u = ev.usage
            con.execute("INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                        "?, ?, ?, ?)",
                        [rec.envelope.event_id, ev.call_id, ev.user_id, ev.thread_id,
                         ev.agent_name, ev.model, ev.provider, ev.kind, u.prompt_tokens,
                         u.completion_tokens, u.total_tokens, u.reasoning_tokens,
                         u.cached_input_tokens, u.cache_write_tokens, ev.cost, when,
                         period_start(period_of(when)), rec.seq])


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    c = duckdb.connect(str(tmp_path / "projections.duckdb"))
    add_usage(c, "alice", "gpt-4o", date(2025, 1, 3), 100, 50, 0.25)
    add_usage(c, "alice", "gpt-4o", date(2025, 1, 31), 10, 5, 0.5)
    add_usage(c, "alice", "claude", date(2025, 1, 9), 1, 1, 0.125)
    add_usage(c, "bob", "gpt-4o", date(2025, 1, 15), 7, 3, 0.1)
    add_usage(c, "bob", "gpt-4o", date(2024, 12, 15), 7, 3, 0.1)
    add_usage(c, "carol", "gpt-4o", date(2025, 2, 1), 7, 3, 0.1)
    return c


async def issued(store: EventStore) -> list[InvoiceIssued]:
    return [r.event async for r in store.replay(subject="events.invoice.>")
            if isinstance(r.event, InvoiceIssued)]


def test_invoice_has_a_line_per_model_with_tokens_and_costs(
        con: duckdb.DuckDBPyConnection) -> None:
    out = compute_invoices(con, "2025-01", datetime(2025, 2, 2, tzinfo=UTC))
    assert [i.user_id for i in out.invoices] == ["alice", "bob"] and out.usage_rows == 4
    alice = out.invoices[0].to_event(out.issued_at)
    assert alice.invoice_id == "alice_2025-01" and alice.amount == pytest.approx(0.875)
    lines = {ln.model: ln for ln in alice.lines}
    assert lines["gpt-4o"].calls == 2 and lines["gpt-4o"].prompt_tokens == 110
    assert lines["gpt-4o"].total_tokens == 165 and lines["gpt-4o"].cost == pytest.approx(0.75)
    assert lines["claude"].cost == pytest.approx(0.125)


async def test_two_schedulers_started_at_once_issue_each_invoice_once(
        store: EventStore, con: duckdb.DuckDBPyConnection) -> None:
    with time_machine.travel(datetime(2025, 2, 2, 0, 0, 1, tzinfo=UTC), tick=False):
        one = InvoiceScheduler(store, lambda: con)
        two = InvoiceScheduler(store, lambda: con)
        a, b = await asyncio.gather(one.catch_up(), two.catch_up())
    assert [r.period for r in a] == ["2024-12", "2025-01"] == [r.period for r in b]
    per_period = {p: len(x.issued) + len(y.issued) for x, y in zip(a, b, strict=True)
                  for p in [x.period]}
    assert per_period == {"2024-12": 1, "2025-01": 2}
    assert sum(x.already_issued + y.already_issued for x, y in zip(a, b, strict=True)) == 3
    got = await issued(store)
    assert sorted(i.invoice_id for i in got) == ["alice_2025-01", "bob_2024-12", "bob_2025-01"]


async def test_manual_rerun_after_the_duplicate_window_issues_nothing(
        store: EventStore, con: duckdb.DuckDBPyConnection) -> None:
    with time_machine.travel(datetime(2025, 3, 1, tzinfo=UTC), tick=False):
        sched = InvoiceScheduler(store, lambda: con)
        first = await sched.run_period("2025-01")
        # Usage that lands late changes nothing: the issued invoice is immutable, and the
        # version check refuses a second InvoiceIssued even with another message id.
        add_usage(con, "alice", "gpt-4o", date(2025, 1, 20), 1, 1, 9.0)
        again = await sched.run_period("2025-01")
    assert len(first.issued) == 2 and again.issued == [] and again.already_issued == 2
    agg = invoice_aggregate("alice", "2025-01")
    assert len(await store.read(agg)) == 1


async def test_open_period_is_refused(store: EventStore,
                                      con: duckdb.DuckDBPyConnection) -> None:
    with (time_machine.travel(datetime(2025, 1, 31, 23, 59, 59, tzinfo=UTC), tick=False),
          pytest.raises(Exception) as ei):
        await InvoiceScheduler(store, lambda: con).run_period("2025-01")
    assert getattr(ei.value, "code", None) == "period_open"
    assert await issued(store) == []


def test_catch_up_waits_a_day_and_skips_users_already_invoiced(
        con: duckdb.DuckDBPyConnection) -> None:
    assert uninvoiced_periods(con, "2025-02") == ["2024-12", "2025-01"]
    con.execute("CREATE TABLE invoices (user_id VARCHAR, period VARCHAR)")
    con.execute("INSERT INTO invoices VALUES ('bob', '2024-12'), ('alice', '2025-01')")
    assert uninvoiced_periods(con, "2025-02") == ["2025-01"]
    out = compute_invoices(con, "2025-01", datetime(2025, 2, 2, tzinfo=UTC))
    assert [i.user_id for i in out.invoices] == ["bob"]


async def test_catch_up_on_the_first_leaves_the_month_just_ended_for_the_cron(
        store: EventStore, con: duckdb.DuckDBPyConnection) -> None:
    with time_machine.travel(datetime(2025, 2, 1, 12, 0, tzinfo=UTC), tick=False):
        reports = await InvoiceScheduler(store, lambda: con).catch_up()
    assert [r.period for r in reports] == ["2024-12"]


def test_cron_fires_on_day_two_at_midnight_utc() -> None:
    trigger = monthly_trigger()
    after = datetime(2025, 1, 31, 23, 59, 59, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, after) == datetime(2025, 2, 2, tzinfo=UTC)
    after = datetime(2025, 12, 2, 0, 0, 1, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, after) == datetime(2026, 1, 2, tzinfo=UTC)


async def test_scheduled_job_issues_the_previous_month_when_the_clock_reaches_it(
        store: EventStore, con: duckdb.DuckDBPyConnection) -> None:
    with time_machine.travel(datetime(2025, 2, 1, 12, 0, tzinfo=UTC), tick=False) as clock:
        sched = InvoiceScheduler(store, lambda: con)
        await sched.start(catch_up=False)
        try:
            assert sched.next_run_time == datetime(2025, 2, 2, tzinfo=UTC)
            assert sched.completed.empty()
            clock.move_to(datetime(2025, 2, 2, 0, 0, 1, tzinfo=UTC))
            sched.wakeup()
            report = await asyncio.wait_for(sched.completed.get(), 20)
        finally:
            await sched.stop()
    assert report.period == "2025-01" and len(report.issued) == 2


async def test_manual_run_request_is_served_by_the_scheduler(
        store: EventStore, con: duckdb.DuckDBPyConnection) -> None:
    with time_machine.travel(datetime(2025, 3, 5, tzinfo=UTC), tick=False):
        sched = InvoiceScheduler(store, lambda: con)
        await sched.start(catch_up=False)
        try:
            await store.nc.flush()
            ok = await store.nc.request(RUN_SUBJECT, b'{"period": "2025-01"}', timeout=10)
            bad = await store.nc.request(RUN_SUBJECT, b'{"period": "2025-3"}', timeout=10)
            still_open = await store.nc.request(RUN_SUBJECT, b'{"period": "2025-03"}',
                                                timeout=10)
        finally:
            await sched.stop()
    assert json.loads(ok.data)["result"] == {"period": "2025-01", "issued": 2,
                                             "already_issued": 0}
    assert json.loads(bad.data)["error"]["code"] == "invalid_input"
    assert json.loads(still_open.data)["error"]["code"] == "period_open"


def test_invoices_view_rows_and_status_patches(tmp_path: Path) -> None:
    from projections.views.invoices import InvoicesView

    view = InvoicesView()
    db = duckdb.connect(str(tmp_path / "v.duckdb"))
    view.create(db)
    batch = view.new_batch()
    batch.add(1, {"type": "invoice_issued", "data": {
        "invoice_id": "a_2025-01", "user_id": "a", "period": "2025-01", "amount": 1.5,
        "lines": [], "issued_at": "2025-02-02T00:00:00Z"}})
    batch.add(2, {"type": "invoice_paid", "data": {"invoice_id": "a_2025-01",
                                                   "at": "2025-02-03T00:00:00Z"}})
    batch.flush(db)
    assert db.sql("SELECT user_id, period, amount, status FROM invoices").fetchall() == [
        ("a", "2025-01", 1.5, "paid")]
