"""One ``RetryPolicy`` for workflow steps and work items: both public names are the same
class, a step without ``retry=`` runs once, delays grow by ``base`` up to the cap."""

from __future__ import annotations

import pytest

import scheduler.workflows as workflows
import scheduler.workpool as workpool
from scheduler.workflows.retry import NO_RETRY
from scheduler.workpool.retry import backoff


def test_both_public_names_are_one_class() -> None:
    assert workflows.RetryPolicy is workpool.RetryPolicy
    p = workflows.RetryPolicy(max_attempts=3, initial_backoff=1.0)
    assert workpool.RetryPolicy.from_spec(p.spec()) == p


def test_a_step_without_retry_runs_once() -> None:
    assert NO_RETRY.max_attempts == 1 and not NO_RETRY.will_retry(1)


def test_backoff_doubles_up_to_the_cap_with_jitter_within_bounds() -> None:
    p = workflows.RetryPolicy(max_attempts=10, initial_backoff=1.0, max_backoff=5.0)
    assert [p.backoff(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert p.will_retry(9) and not p.will_retry(10)
    j = workpool.RetryPolicy(initial_backoff=1.0, jitter=0.5)
    assert all(0.5 <= j.backoff(1) <= 1.5 for _ in range(50))
    assert backoff(j.spec(), 30) == pytest.approx(workpool.RetryPolicy.max_backoff, rel=0.5)


def test_invalid_numbers_are_refused() -> None:
    for bad in ({"max_attempts": 0}, {"initial_backoff": -1}, {"base": 0.5},
                {"jitter": 2}, {"max_backoff": -1}):
        with pytest.raises(ValueError):
            workflows.RetryPolicy(**bad)  # type: ignore[arg-type]
