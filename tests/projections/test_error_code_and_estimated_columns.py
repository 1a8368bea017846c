"""The ``messages.error_code`` and ``usage.estimated`` columns (issue 13, part 5): filled from
the events that carry them, NULL / false for events written before the fields existed (old
events still fold), and the same after a rebuild."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

from events import (
    Aggregate,
    EventEnvelope,
    EventStore,
    MessageFinalized,
    MessageStatusChanged,
    Usage,
    UsageRecorded,
    new_id,
)
from projections.projector import Projector, ProjectorConfig, run_until_caught_up
from threadlog.embedded_nats import EmbeddedNats

from .factories import create_thread, save_message


def without(event: Any, aggregate: Aggregate, user: str, field: str) -> EventEnvelope:
    """``event`` as an event written before ``field`` existed (the key absent)."""
    env = EventEnvelope.wrap(event, aggregate, user_id=user)
    assert field in env.data
    return env.model_copy(update={"data": {k: v for k, v in env.data.items() if k != field}})


async def project(nc: NATS, server: EmbeddedNats, db: Path, stream: str,
                  sql: str) -> list[tuple[Any, ...]]:
    p = Projector(ProjectorConfig(db_path=db, stream=stream), nc, server.endpoint)
    await run_until_caught_up(p)
    try:
        return p.cursor().execute(sql).fetchall()
    finally:
        await p.close()


async def test_error_codes_fold_into_messages_and_old_events_leave_them_null(
        store: EventStore, nc: NATS, nats_server: EmbeddedNats, tmp_path: Path) -> None:
    tid, _ = await create_thread(store, "u1")
    agg = Aggregate.thread(tid)
    coded, _ = await save_message(store, "u1", tid, 0, role="assistant", status="pending")
    old, _ = await save_message(store, "u1", tid, 1, role="assistant", status="pending")
    changed, _ = await save_message(store, "u1", tid, 2, role="assistant", status="pending")
    sql = (f"SELECT message_id, status, error, error_code FROM messages "
           f"WHERE thread_id = '{tid}' ORDER BY \"order\"")
    stored = tmp_path / "stored.duckdb"  # the saves applied first: the updates patch rows
    assert [r[1] for r in await project(nc, nats_server, stored, store.stream, sql)] == [
        "pending"] * 3
    await store.append(agg, [
        MessageFinalized(message_id=coded, thread_id=tid, status="failed", error="429",
                         error_code="rate_limited"),
        without(MessageFinalized(message_id=old, thread_id=tid, status="failed",
                                 error="old failure"), agg, "u1", "error_code"),
        MessageStatusChanged(message_id=changed, thread_id=tid, status="failed",
                             error="stopped", error_code="aborted"),
    ], user_id="u1")
    expected = [(coded, "failed", "429", "rate_limited"), (old, "failed", "old failure", None),
                (changed, "failed", "stopped", "aborted")]
    assert await project(nc, nats_server, stored, store.stream, sql) == expected
    # a rebuild folds saves and updates in one batch: the same rows
    fresh = tmp_path / "fresh.duckdb"
    assert await project(nc, nats_server, fresh, store.stream, sql) == expected


async def test_usage_rows_say_whether_the_usage_was_estimated(
        store: EventStore, nc: NATS, nats_server: EmbeddedNats, tmp_path: Path) -> None:
    agg = Aggregate("usage", "u1")
    usage = Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5)
    calls = [new_id() for _ in range(3)]

    def ev(call: str, **extra: Any) -> UsageRecorded:
        return UsageRecorded(call_id=call, user_id="u1", model="m", usage=usage, **extra)

    await store.append(agg, [ev(calls[0], estimated=True), ev(calls[1]),
                             without(ev(calls[2]), agg, "u1", "estimated")], user_id="u1")
    rows = await project(nc, nats_server, tmp_path / "u.duckdb", store.stream,
                         "SELECT call_id, estimated FROM usage ORDER BY seq")
    assert rows == [(calls[0], True), (calls[1], False), (calls[2], False)]


async def test_a_finalized_message_carries_its_calls_cost(
        store: EventStore, nc: NATS, nats_server: EmbeddedNats, tmp_path: Path) -> None:
    """``messages.cost`` (view v4) is the step's model-call cost from
    ``message_finalized.cost``, whether the save was applied before or in the same batch;
    a message without a call has none."""
    tid, _ = await create_thread(store, "u1")
    prompt, _ = await save_message(store, "u1", tid, 0, role="user")
    answer, _ = await save_message(store, "u1", tid, 0, step=1, role="assistant",
                                   status="pending")
    sql = (f"SELECT message_id, status, cost FROM messages WHERE thread_id = '{tid}' "
           "ORDER BY step_order")
    stored = tmp_path / "stored.duckdb"
    assert [r[2] for r in await project(nc, nats_server, stored, store.stream, sql)] == [
        None, None]
    await store.append(Aggregate.thread(tid), [MessageFinalized(
        message_id=answer, thread_id=tid, status="success", cost=0.0125)], user_id="u1")
    expected = [(prompt, "success", None), (answer, "success", 0.0125)]
    assert await project(nc, nats_server, stored, store.stream, sql) == expected
    assert await project(nc, nats_server, tmp_path / "fresh.duckdb", store.stream,
                         sql) == expected
