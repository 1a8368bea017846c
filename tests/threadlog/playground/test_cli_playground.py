"""``threadlog playground``'s option errors: one line, exit 2, nothing started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import typer
from typer.testing import CliRunner

from threadlog.cli_playground import playground_command


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("playground")(playground_command)
    app.command("other")(lambda: None)  # a group, as in threadlog.cli
    return app


def test_an_unknown_role_is_refused() -> None:
    res = CliRunner().invoke(cli(), ["playground", "--role", "admin"])
    assert res.exit_code == 2 and "--role must be user or operator" in res.output


def test_a_deployment_url_needs_credentials() -> None:
    res = CliRunner().invoke(cli(), ["playground", "--nats-url", "nats://127.0.0.1:1"],
                             env={"THREADLOG_NATS_CREDS": ""})
    assert res.exit_code == 2 and "needs --creds" in res.output


def test_an_unreachable_deployment_is_one_line(tmp_path) -> None:
    creds = tmp_path / "x.creds"
    creds.write_text("not a creds file")
    res = CliRunner().invoke(cli(), ["playground", "--nats-url", "nats://127.0.0.1:1",
                                     "--creds", str(creds)])
    assert res.exit_code == 2 and "error:" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_stops_the_embedded_server_too(tmp_path: Path, sig: int) -> None:
    """uvicorn re-raises the signal that stopped it; with the default SIGTERM handler the
    process died before stopping its embedded nats-server (found running afterwards)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "threadlog.cli", "playground",
                             "--data-dir", str(tmp_path), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # bounded: the process prints this line or exits
            if "threadlog playground on" in line:
                break
        else:
            pytest.fail("the playground did not start")
        mine = [p for p in psutil.process_iter(["cmdline"])
                if str(tmp_path) in " ".join(p.info["cmdline"] or []) and p.pid != proc.pid]
        assert mine, "no embedded nats-server found"
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
        _, alive = psutil.wait_procs(mine, timeout=10)
        assert alive == [], f"still running after the playground stopped: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
