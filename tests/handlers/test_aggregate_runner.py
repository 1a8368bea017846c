"""The generic aggregate runner on several aggregate kinds (invoice, usage/budget, canvas):
a re-sent command id gets the first reply, a stale state (another process appended)
retries on the fresh one, and a refused command appends nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from events import EventStore, ThreadlogError, new_id
from events.invoice_events import InvoiceIssued, InvoiceLine, invoice_id
from handlers.billing.commands import MarkInvoiceFailed, MarkInvoicePaid, SetSpendLimit
from handlers.billing.service import BillingCommands
from handlers.billing.spend_ledger import SpendLedger
from handlers.canvas.commands import CreateCanvas, EditCanvas
from handlers.canvas.service import CanvasService
from handlers.command_log import CommandLog
from handlers.runner import CommandRunner
from handlers.threads.commands import CreateThread
from handlers.threads.decisions import create_thread, replay_thread_result
from handlers.threads.state import ThreadStateCache
from scheduler.invoice_issuer import issue_invoice


@pytest.fixture
async def command_log(store: EventStore) -> AsyncIterator[CommandLog]:
    bucket = f"{store.stream}_commands"
    log = await CommandLog.open(store.js, bucket, ttl_s=120.0)
    yield log
    await log.drain()
    await store.js.delete_key_value(bucket)


async def issue(store: EventStore, user: str, period: str = "2025-01") -> None:
    inv = InvoiceIssued(invoice_id=invoice_id(user, period), user_id=user, period=period,
                        amount=2.0, lines=[InvoiceLine(model="m", calls=1, cost=2.0)],
                        issued_at=datetime(2025, 2, 2, tzinfo=UTC))
    assert await issue_invoice(store, inv)


async def test_invoice_resend_gets_the_first_reply_and_appends_nothing(
        store: EventStore, command_log: CommandLog) -> None:
    billing = BillingCommands(store, SpendLedger(store), command_log)
    await issue(store, "ann")
    first = await billing.mark_invoice(MarkInvoicePaid(command_id="pay1", user_id="ann",
                                                       period="2025-01"))
    last = await store.last_seq()
    again = await billing.mark_invoice(MarkInvoicePaid(command_id="pay1", user_id="ann",
                                                       period="2025-01"))
    assert again == first and first.result["status"] == "paid"
    # Without the command log (another process, or after its TTL): rebuilt from the log.
    other = BillingCommands(store, SpendLedger(store), None)
    rebuilt = await other.mark_invoice(MarkInvoicePaid(command_id="pay1", user_id="ann",
                                                       period="2025-01"))
    assert rebuilt.result == first.result and rebuilt.seq == first.seq
    assert await store.last_seq() == last


async def test_refused_invoice_change_appends_nothing(store: EventStore) -> None:
    billing = BillingCommands(store, SpendLedger(store), None)
    before = await store.last_seq()
    with pytest.raises(ThreadlogError) as ei:
        await billing.mark_invoice(MarkInvoiceFailed(command_id=new_id(), user_id="nobody",
                                                     period="2025-01"))
    assert ei.value.code == "not_found"
    assert await store.last_seq() == before


async def test_stale_invoice_state_is_caught_up_before_deciding(store: EventStore) -> None:
    """Process A cached the invoice before B paid it: A's failure is refused on the
    fresh state (invalid_transition), not appended."""
    a = BillingCommands(store, SpendLedger(store), None)
    b = BillingCommands(store, SpendLedger(store), None)
    await issue(store, "bob")
    await a.invoices.states.get(invoice_id("bob", "2025-01"))  # A's cached, pending state
    await b.mark_invoice(MarkInvoicePaid(command_id="p", user_id="bob", period="2025-01"))
    before = await store.last_seq()
    with pytest.raises(ThreadlogError) as ei:
        await a.mark_invoice(MarkInvoiceFailed(command_id="f", user_id="bob",
                                               period="2025-01"))
    assert (ei.value.code, ei.value.details["from"]) == ("invalid_transition", "paid")
    assert await store.last_seq() == before


async def test_budget_set_resend_returns_the_first_reply(
        store: EventStore, command_log: CommandLog) -> None:
    billing = BillingCommands(store, SpendLedger(store), command_log)
    first = await billing.set_spend_limit(SetSpendLimit(command_id="l1", user_id="cy",
                                                        limit_usd=1.0))
    await billing.set_spend_limit(SetSpendLimit(command_id="l2", user_id="cy", limit_usd=2.0))
    last = await store.last_seq()
    again = await billing.set_spend_limit(SetSpendLimit(command_id="l1", user_id="cy",
                                                        limit_usd=1.0))
    assert again == first and first.result["limit_usd"] == 1.0
    assert await store.last_seq() == last
    assert (await billing.ledger.status("cy")).limit_usd == 2.0


async def test_budget_set_on_a_stale_fold_retries_on_the_fresh_one(store: EventStore) -> None:
    """A's fold of ``usage.<user>`` is behind B's limit: A's append conflicts, catches up
    and is appended after B's, so the limit in force is A's."""
    a, b = SpendLedger(store), SpendLedger(store)
    await a.status("dee")  # A caches the (empty) fold
    await BillingCommands(store, b, None).set_spend_limit(
        SetSpendLimit(command_id="b1", user_id="dee", limit_usd=5.0))
    reply = await BillingCommands(store, a, None).set_spend_limit(
        SetSpendLimit(command_id="a1", user_id="dee", limit_usd=3.0))
    assert reply.result["limit_usd"] == 3.0 and reply.seq == await store.last_seq()
    assert (await SpendLedger(store).status("dee")).limit_usd == 3.0


async def test_canvas_edit_on_a_stale_state_retries_and_refusal_appends_nothing(
        store: EventStore, command_log: CommandLog) -> None:
    threads = ThreadStateCache(store)
    runner = CommandRunner(store, threads, command_log)
    cmd = CreateThread(command_id=new_id(), user_id="eve", thread_id="t" + new_id()[:8])
    tid = (await runner.run(cmd, cmd.thread_id or "", create_thread,
                            replay_thread_result)).result["thread_id"]
    a = CanvasService(store, threads, command_log)
    b = CanvasService(store, threads, None)
    created = await a.create(CreateCanvas(command_id="c1", user_id="eve", thread_id=tid))
    cid = created.result["canvas_id"]
    assert await a.create(CreateCanvas(command_id="c1", user_id="eve", thread_id=tid)) == created
    await a.canvases.get(cid)  # A caches version 0
    op = [{"op": "add", "path": "/elements/x", "value": {"type": "text", "text": "hi"}}]
    await b.edit(EditCanvas(command_id="e1", user_id="eve", canvas_id=cid, base_version=0,
                            ops=op))
    # A decides on version 0, the append conflicts, A catches up to version 1 and decides
    # again: base_version 0 is now stale, a conflict carrying the current version.
    before = await store.last_seq()
    with pytest.raises(ThreadlogError) as ei:
        await a.edit(EditCanvas(command_id="e2", user_id="eve", canvas_id=cid,
                                base_version=0, ops=op))
    assert (ei.value.code, ei.value.details["current_version"]) == ("conflict", 1)
    with pytest.raises(ThreadlogError) as forbidden:
        await a.edit(EditCanvas(command_id="e3", user_id="mallory", canvas_id=cid,
                                base_version=1, ops=op))
    assert forbidden.value.code == "forbidden"
    assert await store.last_seq() == before
    ok = await a.edit(EditCanvas(command_id="e4", user_id="eve", canvas_id=cid,
                                 base_version=1, ops=[{"op": "remove", "path": "/elements/x"}]))
    assert ok.result["version"] == 2 and ok.seq == await store.last_seq()
