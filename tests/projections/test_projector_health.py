"""``ProjectorHealth``: its JSON shape (read by ``threadlog health`` and ``ops.status``)
and what users see of an error (no server paths)."""

from __future__ import annotations

from datetime import UTC, datetime

from projections.health import ProjectorHealth, error_text, for_users, without_paths


def test_to_dict_is_json_ready_and_says_whether_healthy() -> None:
    since = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)
    h = ProjectorHealth(state="retrying", checkpoint=10, stream_last_seq=15, lag=5,
                        last_error="IOException: No space left on device", since=since)
    assert h.to_dict() == {"state": "retrying", "checkpoint": 10, "stream_last_seq": 15,
                           "lag": 5, "last_error": "IOException: No space left on device",
                           "since": "2026-12-06T07:00:00+00:00", "healthy": False}
    assert ProjectorHealth("running", 1, 1, 0, None, None).to_dict()["healthy"] is True


def test_users_see_the_reason_without_the_servers_paths() -> None:
    text = ('IOException: IO Error: Could not set lock on file "/srv/data/threadlog.duckdb": '
            "Conflicting lock is held in /usr/bin/python3 (PID 7)")
    cut = without_paths(text)
    assert "/srv" not in cut and "/usr" not in cut
    assert '"threadlog.duckdb"' in cut and "Conflicting lock" in cut and "python3" in cut
    h = ProjectorHealth("unavailable", 0, None, None, text, None)
    assert for_users(h).last_error == cut and h.last_error == text


def test_error_text_keeps_the_original_error() -> None:
    assert error_text(OSError(28, "No space left on device")) == (
        "OSError: [Errno 28] No space left on device")
    assert error_text(TimeoutError()) == "TimeoutError"
