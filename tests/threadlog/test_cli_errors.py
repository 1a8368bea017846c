"""The CLI against a deployment: user errors are one line saying what is wrong, non-zero
exit, no traceback (``--debug`` shows it); a named deployment is asked, not a local file."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.conftest import RuntimeFactory
from threadlog.cli_errors import one_line
from threadlog.parts import serve_parts

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


async def test_sql_with_a_named_deployment_never_reads_the_local_file(
        runtime_factory: RuntimeFactory, tmp_path: Path) -> None:
    """``threadlog sql --nats-url URL`` answers from that deployment even when a local
    ``.threadlog/threadlog.duckdb`` is free to open (it used to read the local file)."""
    local = tmp_path / "cwd" / ".threadlog"
    local.mkdir(parents=True)
    con = duckdb.connect(str(local / "threadlog.duckdb"))
    con.execute("CREATE TABLE threads AS SELECT 'LOCAL-DEMO-DATA' AS title")
    con.close()
    async with runtime_factory(extra_parts=serve_parts()) as rt:
        res = await rt.client("u1").create_thread(title="FROM-THE-DEPLOYMENT")
        await rt.client("u1").query("query.threads.list", min_seq=res.seq)
        assert rt.endpoint is not None and rt.endpoint.creds is not None
        out = await asyncio.to_thread(
            run, "sql", "SELECT title FROM threads", "--json", "--nats-url",
            rt.endpoint.url, "--creds", str(rt.endpoint.creds), cwd=tmp_path / "cwd")
    assert out.returncode == 0, out.stderr
    titles = [row[0] for row in json.loads(out.stdout)["rows"]]
    assert "FROM-THE-DEPLOYMENT" in titles and "LOCAL-DEMO-DATA" not in titles
