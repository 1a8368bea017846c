"""Token-bucket arithmetic (pure): refill, the wait for an amount, a changed limit; the
estimate; the defaults in Settings."""

from __future__ import annotations

import pytest

from handlers.rate_limits.bucket import Bucket
from handlers.rate_limits.service import estimate_tokens


def test_a_bucket_refills_at_its_rate_up_to_its_capacity() -> None:
    b = Bucket.full(60, now=100.0).take(60)
    assert b.refilled(60, now=110.0).level == pytest.approx(10.0)
    assert b.refilled(60, now=1_000.0).level == 60.0


def test_the_wait_is_for_the_missing_amount_capped_at_a_full_bucket() -> None:
    b = Bucket.full(2, now=0.0).take(2)
    assert b.wait_for(1) == pytest.approx(30.0)
    big = Bucket.full(100, now=0.0).take(100)
    assert big.wait_for(10_000) == pytest.approx(60.0)  # more than fits: a full bucket
    assert Bucket.full(5, now=0.0).wait_for(1) == 0.0


def test_debt_waits_longer_and_a_clock_going_back_refills_nothing() -> None:
    b = Bucket.full(60, now=50.0).take(90)  # 30 in debt
    assert b.wait_for(1) == pytest.approx(31.0)
    assert b.refilled(60, now=40.0).level == pytest.approx(-30.0)


def test_a_changed_limit_keeps_what_was_used() -> None:
    used_one = Bucket.full(1, now=0.0).take(1)
    assert used_one.refilled(5, now=0.0).level == pytest.approx(4.0)
    assert Bucket.full(5, now=0.0).take(4).refilled(2, now=0.0).level == pytest.approx(-2.0)


def test_stored_form_round_trips_and_malformed_is_none() -> None:
    b = Bucket(1.5, 10.0, 3.0)
    assert Bucket.from_json(b.to_json()) == b
    for bad in (None, [1, 2], [1, 2, 0], ["1", 2, 3], [True, 2, 3], {"level": 1}):
        assert Bucket.from_json(bad) is None


def test_the_estimate_is_a_quarter_of_the_prompt_plus_the_completion_allowance() -> None:
    assert estimate_tokens("x" * 10, 100) == 103
    assert estimate_tokens(None, None) == 512


def test_the_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from threadlog.settings import Settings, SettingsError, load_settings

    assert (Settings().rate_messages_per_minute, Settings().rate_tokens_per_minute) == (0, 0)
    monkeypatch.setenv("THREADLOG_RATE_MESSAGES_PER_MINUTE", "30")
    monkeypatch.setenv("THREADLOG_RATE_TOKENS_PER_MINUTE", "40000")
    s = load_settings()
    assert (s.rate_messages_per_minute, s.rate_tokens_per_minute) == (30, 40_000)
    monkeypatch.setenv("THREADLOG_RATE_TOKENS_PER_MINUTE", "-1")
    with pytest.raises(SettingsError, match="rate_tokens_per_minute"):
        load_settings()
