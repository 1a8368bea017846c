"""Putting an item's message on the WORK stream: now, or at a due time (durably).

A due time in the future is a JetStream *scheduled message* (nats-server 2.12+, ADR-51):
a message on ``work.<pool>.sched.<work_id>`` with ``Nats-Schedule: @at <RFC 3339>`` and
``Nats-Schedule-Target: work.<pool>.run.<fn>``; the server stores it and, when due,
publishes its body to the target, where the pool's consumer delivers it. Measured on
nats-server 2.15.1: fires within ~1 ms of the due time (a time already past: ~0.25 s),
survives a restart of every worker (it lives in the stream), does not count against
``max_ack_pending`` while waiting, and a newer schedule on the same subject replaces the
older one (so an item has at most one).

Why not ``msg.nak(delay=...)``: measured on 2.15.1, a message NAKed with a delay stays
*ack pending* for the whole delay, so every item waiting to retry (or waiting for its
``run_after``) would hold one of the pool's ``max_parallelism`` slots.

Guarantees: publishing is idempotent per ``(work_id, key)`` within the stream's
duplicate window (``Nats-Msg-Id``); beyond it a duplicate message is harmless (the
worker decides from the log and drops extra copies).
Failure modes: a server without message schedules rejects the publish (an error from
``js.publish``); :class:`Unavailable`-like timeouts surface as nats-py errors.
"""

from __future__ import annotations

from datetime import UTC, datetime

from nats.js import JetStreamContext

from scheduler.workpool.limits import PoolLayout

H_MSG_ID = "Nats-Msg-Id"
H_SCHEDULE = "Nats-Schedule"
H_SCHEDULE_TARGET = "Nats-Schedule-Target"


def at_expression(due: datetime) -> str:
    """``@at <RFC 3339 UTC with milliseconds>`` for a ``Nats-Schedule`` header."""
    if due.tzinfo is None:
        due = due.replace(tzinfo=UTC)
    stamp = due.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return f"@at {stamp}"


async def publish_now(js: JetStreamContext, layout: PoolLayout, work_id: str, fn: str,
                      *, key: str) -> int:
    """Queue a delivery of ``work_id`` now; returns its stream sequence."""
    ack = await js.publish(layout.run_subject(fn), work_id.encode(),
                           headers={H_MSG_ID: f"{work_id}:{key}"})
    return int(ack.seq)


async def publish_schedule(js: JetStreamContext, layout: PoolLayout, work_id: str, fn: str,
                           due: datetime, *, key: str) -> int:
    """Queue a delivery of ``work_id`` at ``due`` (server-side, durable)."""
    ack = await js.publish(layout.sched_subject(work_id), work_id.encode(), headers={
        H_MSG_ID: f"{work_id}:{key}",
        H_SCHEDULE: at_expression(due),
        H_SCHEDULE_TARGET: layout.run_subject(fn),
    })
    return int(ack.seq)


async def drop_schedule(js: JetStreamContext, layout: PoolLayout, work_id: str) -> None:
    """Remove the item's pending schedule, if any (a canceled item's)."""
    await js.purge_stream(layout.stream, subject=layout.sched_subject(work_id))
