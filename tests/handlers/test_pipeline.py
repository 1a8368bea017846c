"""One pipeline on every subject: strict decoding (bounded nesting, finite numbers), strict
types, one error mapping (no traceback for bad input, nothing appended), the first reply
for a re-sent command, and ``reply_too_large`` instead of a silently dropped reply.

Subjects come from the registered subject lists (and the query specs), sent through
``rt.client(user)``: the client builds the wire subjects."""

from __future__ import annotations

import logging
import math
import sys
import types
from collections.abc import AsyncIterator, Iterator
from typing import Any, Union, get_args, get_origin

import pytest
from pydantic import BaseModel

from events import ThreadlogError, new_id
from handlers import subjects as thread_subjects
from handlers.agents.commands import Abort, DecideApproval, Generate
from handlers.billing import subjects as billing_subjects
from handlers.billing.commands import (
    BudgetQuery,
    MarkInvoiceFailed,
    MarkInvoicePaid,
    SetSpendLimit,
)
from handlers.canvas import subjects as canvas_subjects
from handlers.canvas.commands import (
    CanvasHistory,
    CreateCanvas,
    EditCanvas,
    GetCanvas,
    RevertCanvasEdit,
)
from handlers.client import Client, Result
from handlers.commands import Command
from handlers.generation_limits import subjects as generation_limit_subjects
from handlers.generation_limits.commands import GenerationLimitQuery, SetGenerationLimit
from handlers.rate_limits import subjects as rate_limit_subjects
from handlers.rate_limits.commands import RateLimitsQuery, SetRateLimits
from handlers.threads.commands import (
    CreateThread,
    DeleteThread,
    DeleteUserData,
    PendingDeletions,
    SaveMessages,
    UpdateThread,
)
from projections.queries.models import MessagesList
from projections.queries.service import QUERIES, QuerySpec
from scheduler.invoice_scheduler import RUN_SUBJECT, RunInvoices
from tests.conftest import RuntimeFactory
from threadlog.parts import serve_parts
from threadlog.runtime import Runtime


def query_subject(spec: QuerySpec) -> str:
    return f"ops.{spec.name}" if spec.operators else f"query.{{user_id}}.{spec.name}"


MODELS: dict[str, type[BaseModel]] = {
    thread_subjects.CREATE_THREAD: CreateThread,
    thread_subjects.UPDATE_THREAD: UpdateThread,
    thread_subjects.DELETE_THREAD: DeleteThread,
    thread_subjects.DELETE_USER_DATA: DeleteUserData,
    thread_subjects.PENDING_DELETIONS: PendingDeletions,
    thread_subjects.SAVE_MESSAGES: SaveMessages,
    thread_subjects.GENERATE: Generate,
    thread_subjects.ABORT: Abort,
    thread_subjects.APPROVAL: DecideApproval,
    canvas_subjects.CREATE: CreateCanvas,
    canvas_subjects.EDIT: EditCanvas,
    canvas_subjects.REVERT: RevertCanvasEdit,
    canvas_subjects.GET: GetCanvas,
    canvas_subjects.HISTORY: CanvasHistory,
    billing_subjects.INVOICE_PAID: MarkInvoicePaid,
    billing_subjects.INVOICE_FAILED: MarkInvoiceFailed,
    billing_subjects.SET_SPEND_LIMIT: SetSpendLimit,
    billing_subjects.BUDGET_STATUS: BudgetQuery,
    rate_limit_subjects.SET_RATE_LIMITS: SetRateLimits,
    rate_limit_subjects.GET_RATE_LIMITS: RateLimitsQuery,
    generation_limit_subjects.SET_GENERATION_LIMIT: SetGenerationLimit,
    generation_limit_subjects.GET_GENERATION_LIMIT: GenerationLimitQuery,
    **{query_subject(spec): spec.model for spec in QUERIES},
    RUN_SUBJECT: RunInvoices,
}
BROKER_SUBJECTS = [*thread_subjects.ALL, *canvas_subjects.ALL, *billing_subjects.ALL,
                   *rate_limit_subjects.ALL, *generation_limit_subjects.ALL,
                   *(query_subject(spec) for spec in QUERIES)]
"""Served by the handlers' FastStream broker (queries by the projector part on it)."""
EVERY_SUBJECT = [*BROKER_SUBJECTS, RUN_SUBJECT]
MESSAGES_LIST = next(s for s, m in MODELS.items() if m is MessagesList)
DEPTH = 1_000


@pytest.fixture
async def rt(runtime_factory: RuntimeFactory) -> AsyncIterator[Runtime]:
    """Handlers, projector (query subjects) and scheduler (``cmd.invoices.run``)."""
    async with runtime_factory(extra_parts=serve_parts()) as r:
        yield r


@pytest.fixture
def deep_json() -> Iterator[None]:
    """Let the client's ``json.dumps`` encode DEPTH levels (the server must refuse them)."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, DEPTH * 4))
    yield
    sys.setrecursionlimit(old)


async def send(client: Client, subject: str, command_id: str | None = None,
               **fields: Any) -> Result:
    """A request as its kind is sent: commands with a command id, queries with the user."""
    model = MODELS[subject]
    if issubclass(model, Command):
        return await client.command(subject, command_id, **fields)
    if "user_id" in model.model_fields:
        return await client.request(subject, {"user_id": client.user_id, **fields})
    return await client.request(subject, fields)


async def refused(client: Client, subject: str, **fields: Any) -> ThreadlogError:
    with pytest.raises(ThreadlogError) as ei:
        await send(client, subject, **fields)
    return ei.value


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def scalar_fields(model: type[BaseModel]) -> list[tuple[str, type]]:
    """The model's int, float and bool fields (``X | None`` included)."""
    out = []
    for name, f in model.model_fields.items():
        ann = f.annotation
        if get_origin(ann) in (Union, types.UnionType):
            args = [a for a in get_args(ann) if a is not type(None)]
            ann = args[0] if len(args) == 1 else None
        if ann in (int, float, bool):
            out.append((name, ann))
    return out


WRONG: dict[type, list[Any]] = {int: ["5", True, 5.5], float: ["5", True], bool: [1, "true"]}
STRICT_CASES = [(s, name, bad) for s in EVERY_SUBJECT for name, kind in scalar_fields(MODELS[s])
                for bad in WRONG[kind]]
NON_FINITE_CASES = [(s, name, bad) for s in EVERY_SUBJECT
                    for name, kind in scalar_fields(MODELS[s]) if kind is float
                    for bad in (math.inf, -math.inf, math.nan)]


async def test_the_subject_lists_cover_every_registered_subscriber(rt: Runtime) -> None:
    assert len(rt.broker.subscribers) == len(set(BROKER_SUBJECTS))
    assert set(MODELS) == set(EVERY_SUBJECT)


@pytest.mark.parametrize("subject", EVERY_SUBJECT)
async def test_deep_nesting_is_invalid_input_without_traceback_or_append(
        rt: Runtime, subject: str, deep_json: None, caplog: pytest.LogCaptureFixture) -> None:
    before = await rt.store.last_seq()
    with caplog.at_level(logging.DEBUG):
        err = await refused(rt.client("deep"), subject, deep=nested(DEPTH))
    assert err.code == "invalid_input" and "nests deeper than" in err.message, err
    assert err.details["max_depth"] == 64
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []
    assert await rt.store.last_seq() == before


@pytest.mark.parametrize(("subject", "field", "bad"), STRICT_CASES)
async def test_lax_values_are_refused_for_numbers_and_booleans(
        rt: Runtime, subject: str, field: str, bad: Any) -> None:
    before = await rt.store.last_seq()
    err = await refused(rt.client("strict"), subject, **{field: bad})
    assert err.code == "invalid_input", err
    assert [field] in [e["loc"] for e in err.details["errors"]], err.details
    assert await rt.store.last_seq() == before


@pytest.mark.parametrize(("subject", "field", "bad"), NON_FINITE_CASES)
async def test_infinity_and_nan_are_refused(rt: Runtime, subject: str, field: str,
                                            bad: float) -> None:
    before = await rt.store.last_seq()
    err = await refused(rt.client("finite"), subject, **{field: bad})
    assert err.code == "invalid_input" and "finite" in err.message, err
    assert await rt.store.last_seq() == before


async def test_infinity_does_not_clear_the_spend_limit(rt: Runtime) -> None:
    c = rt.client("inf")
    await c.command(billing_subjects.SET_SPEND_LIMIT, limit_usd=2.0)
    with pytest.raises(ThreadlogError) as ei:
        await c.command(billing_subjects.SET_SPEND_LIMIT, limit_usd=math.inf)
    assert ei.value.code == "invalid_input"
    assert (await c.query(billing_subjects.BUDGET_STATUS)).value["limit_usd"] == 2.0


async def test_a_resent_budget_set_returns_its_first_reply(rt: Runtime) -> None:
    c = rt.client("resend")
    first = await c.command(billing_subjects.SET_SPEND_LIMIT, "limit-1", limit_usd=1.0)
    await c.command(billing_subjects.SET_SPEND_LIMIT, "limit-2", limit_usd=2.0)
    last = await rt.store.last_seq()
    again = await c.command(billing_subjects.SET_SPEND_LIMIT, "limit-1", limit_usd=1.0)
    assert (again.value, again.seq) == (first.value, first.seq)
    assert first.value["limit_usd"] == 1.0
    assert await rt.store.last_seq() == last


async def test_a_reply_over_max_payload_is_reply_too_large(rt: Runtime) -> None:
    c = rt.client("big" + new_id()[:6])
    tid = (await c.create_thread()).value["thread_id"]
    seq = 0
    for i in range(6):  # 6 x 190 kB of text: over the server's default 1 MB max payload
        seq = (await c.save_message(tid, "user", f"{i}" + "x" * 190_000)).seq or seq
    with pytest.raises(ThreadlogError) as ei:
        await c.query(MESSAGES_LIST, thread_id=tid, limit=50, min_seq=seq)
    err = ei.value
    assert err.code == "reply_too_large" and "limit/cursor" in err.message, err
    assert err.details["size"] > err.details["limit"] > 0
    page = await c.query(MESSAGES_LIST, thread_id=tid, limit=2, min_seq=seq)
    assert len(page.value["items"]) == 2 and page.value["next_cursor"]
