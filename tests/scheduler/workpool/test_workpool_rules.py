"""The delivery rules (``scheduler.workpool.decide``) and the fold, without a server; and
the public surface."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import scheduler.workpool as workpool
from events.work_events import (
    RetrySpec,
    WorkCanceled,
    WorkCompleted,
    WorkEnqueued,
    WorkFailed,
    WorkStarted,
)
from scheduler.workpool.decide import decide
from scheduler.workpool.retry import RetryPolicy, backoff, will_retry
from scheduler.workpool.status import WorkState, fold

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = RetrySpec(max_attempts=3, initial_backoff=1.0, base=2.0)


def item(on_complete: str | None = "done", run_at: datetime | None = None) -> WorkState:
    state = fold([(1, WorkEnqueued(work_id="w", pool="p", fn="f", on_complete=on_complete,
                                   run_at=run_at, retry=SPEC))])
    assert state is not None
    return state


def test_the_public_surface_is_locked() -> None:
    assert sorted(workpool.__all__) == [
        "CompletionContext", "NonRetryableError", "RetryPolicy", "WorkContext",
        "WorkResult", "WorkStatus", "Worker", "Workpool"]


def test_pending_items_start_when_due_and_are_scheduled_before() -> None:
    assert decide(item(), seq=5, delivery=1, now=NOW) == "start"
    later = item(run_at=NOW + timedelta(seconds=10))
    assert decide(later, 5, 1, NOW) == "schedule"
    assert decide(later, 5, 1, NOW + timedelta(seconds=10)) == "start"
    assert decide(None, 5, 1, NOW) == "drop"


def test_a_running_attempt_belongs_to_its_delivery() -> None:
    running = item().apply(WorkStarted(work_id="w", attempt=1, msg_seq=5, delivery=1), 2)
    assert decide(running, 5, 2, NOW) == "abandon"        # my message, its worker died
    assert decide(running, 6, 1, NOW) == "drop"           # another copy: the owner lives on
    assert decide(running, 5, 1, NOW) == "stand_down"
    stale = item().apply(WorkStarted(work_id="w", attempt=1, msg_seq=5, delivery=3), 2)
    assert decide(stale, 5, 2, NOW) == "stand_down"       # a later delivery took over


def test_finished_items_never_start_again() -> None:
    started = item().apply(WorkStarted(work_id="w", attempt=1, msg_seq=5), 2)
    done = started.apply(WorkCompleted(work_id="w", attempt=1, result=7), 3)
    assert decide(done, 5, 1, NOW) == "complete"
    assert decide(done, 5, 2, NOW) == "complete"
    assert decide(done, 9, 1, NOW) == "drop"
    no_handler = item(on_complete=None).apply(WorkCanceled(work_id="w"), 2)
    assert decide(no_handler, 5, 1, NOW) == "drop"
    canceled = item().apply(WorkCanceled(work_id="w"), 2)
    assert decide(canceled, 9, 1, NOW) == "claim"
    # A late result after a cancel does not change the outcome.
    assert canceled.apply(WorkCompleted(work_id="w", attempt=1), 3).result.kind == "canceled"  # type: ignore[union-attr]


def test_failed_attempts_wait_for_their_retry_time() -> None:
    s = item().apply(WorkStarted(work_id="w", attempt=1, msg_seq=5), 2)
    s = s.apply(WorkFailed(work_id="w", attempt=1, error="x", will_retry=True,
                           retry_at=NOW + timedelta(seconds=1)), 3)
    assert (s.phase, s.failures) == ("pending", 1)
    assert decide(s, 5, 1, NOW) == "schedule"
    assert decide(s, 7, 1, NOW + timedelta(seconds=1)) == "start"


def test_backoff_and_retry_budget() -> None:
    assert [backoff(SPEC, n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert will_retry(SPEC, 2, RuntimeError()) and not will_retry(SPEC, 3, RuntimeError())
    assert not will_retry(SPEC, 1, workpool.NonRetryableError())
    one = RetryPolicy(max_attempts=1).spec()
    assert will_retry(one, 1, None) and not will_retry(one, 3, None)  # lost workers
