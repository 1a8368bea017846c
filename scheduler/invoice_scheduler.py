"""The monthly invoice job: APScheduler's ``AsyncIOScheduler`` with a cron trigger on day 2
at 00:00 UTC issuing the previous month's invoices, and a catch-up at start-up.

Where it runs: DuckDB lets one process open the file, and the projector owns it. So the
scheduler runs **in the projector's process** (``threadlog serve`` runs handlers,
projector and scheduler together) and reads the ``usage`` view through a cursor of the
projector's connection (``connection``), in a worker thread. Before computing a period it
waits until the projector has applied the stream up to its current end
(``wait_caught_up``), so no usage event appended before the run is missed.

Guarantees
- Each invoice is issued once (``invoice_issuer``), so several schedulers, restarts and
  manual runs (``threadlog invoices run``) are safe together.
- Missed runs are caught up at start from the log (through the views it built): every
  closed period (ended at least ``grace`` ago, one day by default, as the cron's day 2)
  with usage and, per the ``invoices`` view, a user without an invoice. APScheduler keeps
  no job store: its memory is not the record.
- Only closed periods are invoiced: ``run_period`` of the current month is refused
  (``period_open``).

Failure modes: a failed monthly run is logged and retried every ``retry_s`` seconds until
it succeeds or the process stops; the next start's catch-up covers it too. Usage appended
to a period after its invoice was issued is not billed (the invoice is immutable).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import duckdb
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from pydantic import BaseModel, ConfigDict, field_validator

from events import EventStore, ThreadlogError
from events.decoding import validate_request
from events.identity import reply_allowed
from events.replies import Reply, bounded_reply_bytes, reply_for
from scheduler.invoice_computation import PeriodInvoices, compute_invoices, uninvoiced_periods
from scheduler.invoice_issuer import IssueReport, issue_invoices
from scheduler.periods import check_period, period_end, period_of, previous_period

log = logging.getLogger(__name__)

ConnectionProvider = Callable[[], duckdb.DuckDBPyConnection]
WaitCaughtUp = Callable[[int], Awaitable[None]]
Clock = Callable[[], datetime]
JOB_ID = "threadlog-monthly-invoices"
RUN_SUBJECT = "ops.invoices.run"
"""Operators only (``ops.>``)."""
"""Request ``{"period": "YYYY-MM"}`` -> reply ``{"ok", "result": {period, issued,
already_issued}}``: a manual run, served by the scheduler (it has the DuckDB cursor)."""


class RunInvoices(BaseModel):
    """The body of ``ops.invoices.run`` (strict, like every command model)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    period: str

    @field_validator("period")
    @classmethod
    def _check_period(cls, v: str) -> str:
        try:
            return check_period(v)
        except ThreadlogError:
            raise ValueError("must be YYYY-MM") from None


def monthly_trigger() -> CronTrigger:
    """Day 2 of every month, 00:00 UTC: the previous month has had a day to settle."""
    return CronTrigger(day=2, hour=0, minute=0, timezone=UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


class InvoiceScheduler:
    """Computes and issues invoices; see the module docstring."""

    def __init__(self, store: EventStore, connection: ConnectionProvider, *,
                 wait_caught_up: WaitCaughtUp | None = None, clock: Clock = utc_now,
                 grace: timedelta = timedelta(days=1), retry_s: float = 600.0,
                 concurrency: int = 256, max_request_bytes: int = 1_000_000) -> None:
        self.store = store
        self.connection = connection
        self.wait_caught_up = wait_caught_up
        self.clock = clock
        self.grace = grace
        self.retry_s = retry_s
        self.concurrency = concurrency
        self.max_request_bytes = max_request_bytes
        self.completed: asyncio.Queue[IssueReport] = asyncio.Queue()
        """Every finished run's report (scheduled, catch-up or manual), for observers."""
        self.catch_up_task: asyncio.Task[list[IssueReport]] | None = None
        self._aps: AsyncIOScheduler | None = None
        self._sub: Any = None

    # -- one period -------------------------------------------------------------------
    async def compute(self, period: str) -> PeriodInvoices:
        """The period's invoices from the usage view (after the projector caught up)."""
        check_period(period)
        if self.wait_caught_up is not None:
            await self.wait_caught_up(await self.store.last_seq())
        issued_at = self.clock()
        return await asyncio.to_thread(self._compute, period, issued_at)

    def _compute(self, period: str, issued_at: datetime) -> PeriodInvoices:
        cur = self.connection().cursor()
        try:
            return compute_invoices(cur, period, issued_at)
        finally:
            cur.close()

    async def run_period(self, period: str) -> IssueReport:
        """Issue the invoices of the closed ``period``; already issued ones are skipped."""
        now = self.clock()
        if now < period_end(check_period(period)):
            raise ThreadlogError(f"billing period {period} is not over yet",
                                 code="period_open", details={"period": period})
        computed = await self.compute(period)
        report = await issue_invoices(self.store, computed, concurrency=self.concurrency)
        log.info("invoices for %s: %d issued, %d already issued", period,
                 len(report.issued), report.already_issued)
        self.completed.put_nowait(report)
        return report

    async def catch_up(self) -> list[IssueReport]:
        """Issue every missing invoice of the closed periods (see the module docstring)."""
        now = self.clock()
        settled = period_of(now - self.grace)  # periods before this one are settled
        if self.wait_caught_up is not None:
            await self.wait_caught_up(await self.store.last_seq())
        periods = await asyncio.to_thread(self._uninvoiced, settled)
        return [await self.run_period(p) for p in periods]

    def _uninvoiced(self, before: str) -> list[str]:
        cur = self.connection().cursor()
        try:
            return uninvoiced_periods(cur, before)
        finally:
            cur.close()

    # -- the schedule -----------------------------------------------------------------
    async def run_monthly(self) -> IssueReport | None:
        """The cron job: the previous month's invoices; on failure, retry later."""
        period = previous_period(self.clock())
        try:
            return await self.run_period(period)
        except Exception:
            log.exception("monthly invoices for %s failed; retrying in %ss", period,
                          self.retry_s)
            if self._aps is not None:
                self._aps.add_job(self.run_monthly, DateTrigger(
                    self.clock() + timedelta(seconds=self.retry_s)),
                    id=f"{JOB_ID}-retry", replace_existing=True)
            return None

    async def start(self, *, catch_up: bool = True, serve_runs: bool = True) -> None:
        """Schedule the monthly job, serve ``RUN_SUBJECT`` (queue group: one scheduler
        answers) and start the catch-up in the background."""
        if serve_runs:
            self._sub = await self.store.nc.subscribe(RUN_SUBJECT, queue="threadlog-invoices",
                                                      cb=self._on_run_request)
        aps = AsyncIOScheduler(timezone=UTC)
        aps.add_job(self.run_monthly, monthly_trigger(), id=JOB_ID, coalesce=True,
                    max_instances=1, misfire_grace_time=None)
        aps.start()
        self._aps = aps
        if catch_up:
            self.catch_up_task = asyncio.ensure_future(self._catch_up_logged())

    async def _on_run_request(self, msg: Any) -> None:
        """``ops.invoices.run`` through the same path as every subject: size limit, strict
        decoding and validation (:func:`events.decoding.validate_request`), one error
        mapping (``reply_for``) and a reply bounded by the connection's max payload; a
        reply subject that is not an inbox is not served (``events.identity``)."""
        if msg.reply and not reply_allowed(msg.reply, msg.subject):
            log.warning("dropped %s: its reply subject %r is not an inbox", RUN_SUBJECT,
                        msg.reply)
            return
        try:
            req = validate_request(RunInvoices, msg.data, max_bytes=self.max_request_bytes)
            report = await self.run_period(req.period)
            reply = Reply.success(report.to_dict())
        except Exception as exc:
            reply = reply_for(exc, where=RUN_SUBJECT)
        if msg.reply:
            await msg.respond(bounded_reply_bytes(reply, self.store.nc.max_payload))

    async def _catch_up_logged(self) -> list[IssueReport]:
        try:
            return await self.catch_up()
        except Exception:  # e.g. the projector's file is unavailable at start
            log.exception("invoice catch-up failed; the next start or run retries it")
            return []

    @property
    def next_run_time(self) -> datetime | None:
        job = self._aps.get_job(JOB_ID) if self._aps is not None else None
        return job.next_run_time if job is not None else None

    def wakeup(self) -> None:
        """Make APScheduler look at the clock now (tests move the clock, then wake it)."""
        if self._aps is not None:
            self._aps.wakeup()

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        if self.catch_up_task is not None and not self.catch_up_task.done():
            self.catch_up_task.cancel()
            with contextlib.suppress(BaseException):
                await self.catch_up_task
        if self._aps is not None:
            self._aps.shutdown(wait=False)
            self._aps = None


class RuntimeLike(Protocol):
    """What the scheduler needs of ``threadlog.runtime.Runtime`` (no import of it here)."""

    store: EventStore
    parts: dict[str, Any]


def invoice_scheduler_part(
        connection_of: Callable[[Any], duckdb.DuckDBPyConnection],
        wait_caught_up_of: Callable[[Any], WaitCaughtUp | None] | None = None,
        **options: Any) -> Callable[[Any], contextlib.AbstractAsyncContextManager[Any]]:
    """A ``threadlog.runtime`` Part running an :class:`InvoiceScheduler` (as
    ``rt.parts["scheduler"]``). ``connection_of(rt)`` gives the projector's DuckDB
    connection; ``wait_caught_up_of(rt)`` its wait-for-sequence function."""

    @contextlib.asynccontextmanager
    async def part(rt: RuntimeLike) -> AsyncIterator[InvoiceScheduler]:
        sched = InvoiceScheduler(
            rt.store, lambda: connection_of(rt),
            wait_caught_up=wait_caught_up_of(rt) if wait_caught_up_of else None, **options)
        rt.parts["scheduler"] = sched
        await sched.start()
        try:
            yield sched
        finally:
            await sched.stop()

    return part


__all__ = ["JOB_ID", "RUN_SUBJECT", "InvoiceScheduler", "invoice_scheduler_part", "monthly_trigger"]
