"""User errors on the CLI: one line saying what is wrong, non-zero exit, no traceback
(``--debug`` shows it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from threadlog.cli_errors import one_line

CLI = [sys.executable, "-m", "threadlog.cli"]
UNREACHABLE = "nats://127.0.0.1:1"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200"})


@pytest.mark.parametrize("args", [
    ("usage", "--user", "u1", "--period", "2026-13", "--nats-url", UNREACHABLE),
    ("invoices", "list", "--period", "2026-13", "--nats-url", UNREACHABLE),
    ("usage", "--user", "u1", "--period", "2026-01", "--nats-url", UNREACHABLE),
    ("events", "tail", "--nats-url", UNREACHABLE),
])
def test_a_user_error_is_one_line_and_exit_2(args: tuple[str, ...], tmp_path: Path) -> None:
    res = run(*args, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error"), res.stderr
    assert "Traceback" not in res.stdout + res.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    res = run("--debug", "usage", "--user", "u1", "--period", "2026-13", "--nats-url",
              UNREACHABLE, cwd=tmp_path)
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_a_held_duckdb_file_says_which_process_to_stop(tmp_path: Path) -> None:
    exc = duckdb.IOException('Could not set lock on file "x.duckdb": Conflicting lock')
    line, status = one_line(exc)
    assert status == 2 and "another process" in line and "--data-dir" in line
