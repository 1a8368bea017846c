"""Handling one delivery of a WORK message: decide from the log, act, then ack.

Order of effects, for every step: the event is appended *before* the message is acked
(or a schedule published before it is acked), so a crash anywhere leaves either the
event without the ack (the message is redelivered after ``ack_wait`` and the log says
how far it got) or nothing at all.

Guarantees
- A finished item never runs again; an attempt runs again only when the delivery that
  started it was lost (the lost attempt is recorded as ``work_failed``/``WorkerLost``).
- The function runs with in-progress heartbeats (``+WPI``) every ``ack_wait / 3``, so a
  long attempt is not redelivered while its worker lives. Each heartbeat also reads the
  item's version: a cancel lands as ``asyncio.CancelledError`` in the function.
- ``on_complete`` runs in the delivery that owns the completion and is recorded once
  (``work_completion_handled`` with an expected version). It can run twice only if its
  process dies after it returned and before the record: it gets an idempotency key.

Failure modes: a function or completion handler this process does not know is NAKed with
a delay of :data:`UNKNOWN_DELAY_S` (another worker takes it; the delay holds a slot of
the pool's limit). An ``on_complete`` that raises is recorded with its error and not
retried. Results must be JSON: one that is not fails the attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from events.errors import ConcurrencyError
from events.store import EventStore
from events.work_events import (
    MAX_ERROR,
    WorkCompleted,
    WorkCompletionClaimed,
    WorkCompletionHandled,
    WorkFailed,
    WorkStarted,
    work_aggregate,
)
from scheduler.workpool import journal, retry
from scheduler.workpool.decide import decide
from scheduler.workpool.limits import PoolLayout
from scheduler.workpool.registry import CompletionContext, Registry, WorkContext
from scheduler.workpool.schedule import publish_schedule
from scheduler.workpool.status import WorkState

log = logging.getLogger(__name__)
UNKNOWN_DELAY_S = 1.0
MAX_RACES = 8


def _now() -> datetime:
    return datetime.now(UTC)


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR]


class ItemHandler:
    """Runs deliveries of one pool's messages in this process."""

    def __init__(self, store: EventStore, js: JetStreamContext, layout: PoolLayout,
                 registry: Registry, *, worker_id: str, ack_wait: float) -> None:
        self.store, self.js, self.layout, self.registry = store, js, layout, registry
        self.worker_id = worker_id
        self.heartbeat = max(0.1, ack_wait / 3)

    async def handle(self, msg: Msg) -> None:
        """Process one delivery to its end (ack, nak, or standing down)."""
        work_id = msg.data.decode()
        meta = msg.metadata
        seq, delivery = meta.sequence.stream, meta.num_delivered
        state = await journal.load(self.store, work_id)
        for _ in range(MAX_RACES):
            try:
                if await self._step(msg, state, seq, delivery):
                    return
            except ConcurrencyError:
                pass
            state = await journal.load(self.store, work_id)
        log.warning("work %s: still racing after %d tries; redelivering", work_id, MAX_RACES)
        await msg.nak(delay=UNKNOWN_DELAY_S)

    async def _step(self, msg: Msg, state: WorkState | None, seq: int, delivery: int) -> bool:
        """Do the decided action; True when this delivery is done with."""
        action = decide(state, seq, delivery, _now())
        if action == "drop":
            await msg.ack()
            return True
        if action == "stand_down":
            return True
        assert state is not None
        if action == "schedule":
            assert state.due_at is not None
            await publish_schedule(self.js, self.layout, state.work_id, state.fn,
                                   state.due_at, key=f"due-{state.attempts}")
            await msg.ack()
            return True
        if action == "abandon":
            lost = WorkFailed(work_id=state.work_id, attempt=state.attempts,
                              error="the worker running this attempt was lost",
                              error_type="WorkerLost",
                              will_retry=retry.will_retry(state.retry, state.attempts, None),
                              retry_at=_now())
            state = await journal.append(self.store, state, lost,
                                         step=f"lost-{state.attempts}-{delivery}")
            return await self._step(msg, state, seq, delivery)
        if action == "claim":
            claim = WorkCompletionClaimed(work_id=state.work_id, msg_seq=seq, delivery=delivery)
            state = await journal.append(self.store, state, claim, step=f"claim-{seq}-{delivery}")
            return await self._step(msg, state, seq, delivery)
        if action == "complete":
            return await self._complete(msg, state)
        fn = self.registry.get(state.fn)
        if fn is None:
            await msg.nak(delay=UNKNOWN_DELAY_S)
            return True
        attempt = state.attempts + 1
        started = WorkStarted(work_id=state.work_id, attempt=attempt, msg_seq=seq,
                              delivery=delivery, worker=self.worker_id)
        state = await journal.append(self.store, state, started,
                                     step=f"start-{attempt}-{seq}-{delivery}")
        ctx = WorkContext(pool=self.layout.pool, work_id=state.work_id, attempt=attempt,
                          fn=state.fn)
        after = await self._attempt(msg, state, fn(ctx, state.args))
        if after is None:
            return True  # a later delivery owns the message now
        return await self._step(msg, after, seq, delivery)

    async def _attempt(self, msg: Msg, state: WorkState, call: Awaitable[Any]
                       ) -> WorkState | None:
        """Run an attempt and record its outcome; the state after it (None: stand down)."""
        task: asyncio.Task[Any] = asyncio.ensure_future(call)
        canceled = await self._heartbeat(msg, task, state, watch_cancel=True)
        if canceled:
            return await journal.load(self.store, state.work_id)
        attempt = state.attempts
        error = asyncio.CancelledError() if task.cancelled() else task.exception()
        if error is None:
            event: WorkCompleted | WorkFailed = WorkCompleted(
                work_id=state.work_id, attempt=attempt, result=task.result())
        else:
            again = retry.will_retry(state.retry, attempt, error)
            delay = retry.backoff(state.retry, attempt) if again else 0.0
            event = WorkFailed(work_id=state.work_id, attempt=attempt, error=_error_text(error),
                               error_type=type(error).__name__, will_retry=again,
                               retry_at=_now() + timedelta(seconds=delay) if again else None)
        try:
            return await journal.append(self.store, state, event, step=f"end-{attempt}")
        except ConcurrencyError:
            fresh = await journal.load(self.store, state.work_id)
            if fresh is not None and fresh.phase != "finished" and fresh.attempts > attempt:
                return None
            return fresh
        except ValueError as exc:  # a result that is not JSON
            failed = WorkFailed(work_id=state.work_id, attempt=attempt,
                                error=_error_text(exc), error_type="InvalidResult",
                                will_retry=False)
            return await journal.append(self.store, state, failed, step=f"end-{attempt}")

    async def _heartbeat(self, msg: Msg, task: asyncio.Task[Any], state: WorkState,
                         *, watch_cancel: bool) -> bool:
        """Wait for ``task`` sending ``+WPI`` every ``heartbeat``; True if the item was
        canceled meanwhile (the task is then canceled and awaited)."""
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.heartbeat)
                if done:
                    return False
                await msg.in_progress()
                if watch_cancel and await self._was_canceled(state):
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
                    return True
        except asyncio.CancelledError:
            task.cancel()
            raise

    async def _was_canceled(self, state: WorkState) -> bool:
        if await self.store.version(work_aggregate(state.work_id)) == state.version:
            return False
        fresh = await journal.load(self.store, state.work_id)
        return fresh is not None and fresh.result is not None and fresh.result.kind == "canceled"

    async def _complete(self, msg: Msg, state: WorkState) -> bool:
        assert state.on_complete is not None and state.result is not None
        handler = self.registry.get(state.on_complete)
        if handler is None:
            await msg.nak(delay=UNKNOWN_DELAY_S)
            return True
        ctx = CompletionContext(pool=self.layout.pool, work_id=state.work_id, fn=state.fn,
                                context=state.context, result=state.result,
                                attempts=state.attempts)
        task: asyncio.Task[Any] = asyncio.ensure_future(handler(ctx))
        await self._heartbeat(msg, task, state, watch_cancel=False)
        error = asyncio.CancelledError() if task.cancelled() else task.exception()
        if error is not None:
            log.error("on_complete %s of work %s raised: %s", state.on_complete,
                      state.work_id, _error_text(error))
        await journal.append(self.store, state, WorkCompletionHandled(
            work_id=state.work_id, error=None if error is None else _error_text(error)),
            step="handled")
        await msg.ack()
        return True
