"""``threadlog serve --app pkg.module:app`` loads the app's agents and workflows into the
process; ``threadlog workflows list|status|cancel`` acts on its runs; bad input is one
line, no traceback."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import nats
import pytest

from events import new_id
from handlers import Client

from .test_cli import CLI, free_port, run_cli


async def test_serve_with_an_app_generates_with_its_agent_and_the_cli_manages_runs(
        tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([*CLI, "serve", "--data-dir", str(tmp_path), "--nats-port",
                             str(port), "--app", "tests.threadlog.serve_app:app"],
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
        creds = tmp_path / "u1.creds"
        issued = run_cli("credentials", "issue", "--role", "user", "--user", "u1",
                         "--data-dir", str(tmp_path), "--out", str(creds))
        assert issued.returncode == 0, issued.stderr
        nc = await nats.connect(url, user_credentials=str(creds), inbox_prefix="_INBOX.u.u1")
        client = Client(nc, user_id="u1", timeout=30)
        tid = (await client.create_thread(title="app")).value["thread_id"]
        reply = await client.generate_text("apphelper", tid, "hello app")
        assert reply.value["text"] == "You said: hello app"
        started = await client.command("cmd.workflow.start", name="hold")
        run_id = started.value["run_id"]
        await nc.close()

        ops = tmp_path / "ops.creds"
        assert run_cli("credentials", "issue", "--role", "operator", "--user", "ops",
                       "--data-dir", str(tmp_path), "--out", str(ops)).returncode == 0
        common = ["--nats-url", url, "--creds", str(ops)]
        listed = await asyncio.to_thread(run_cli, "workflows", "list", "--json", *common)
        assert listed.returncode == 0, listed.stderr
        assert [(r["run_id"], r["name"], r["user_id"]) for r in json.loads(listed.stdout)] \
            == [(run_id, "hold", "u1")]
        status = await asyncio.to_thread(run_cli, "workflows", "status", run_id, *common)
        assert status.returncode == 0 and "hold" in status.stdout, status.stderr
        cancel = await asyncio.to_thread(run_cli, "workflows", "cancel", run_id, *common)
        assert cancel.returncode == 0 and f"cancel requested for {run_id}" in cancel.stdout
        missing = await asyncio.to_thread(run_cli, "workflows", "status", "nope" + new_id(),
                                          *common)
        assert missing.returncode == 1
        assert missing.stderr.strip().startswith("error: [not_found]")
        assert "Traceback" not in missing.stderr and len(missing.stderr.splitlines()) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(("spec", "needle"), [
    ("no_colon", "expected 'package.module:attribute'"),
    ("tests.threadlog.nothing_here:app", "cannot import"),
    ("tests.threadlog.serve_app:missing", "has no attribute 'missing'"),
    ("tests.threadlog.serve_app:not_an_app", "not a threadlog.App"),
])
def test_a_bad_app_string_is_a_one_line_error(tmp_path: Path, spec: str, needle: str) -> None:
    res = run_cli("serve", "--data-dir", str(tmp_path), "--app", spec,
                  env={"COLUMNS": "300"})
    out = res.stdout + res.stderr
    assert res.returncode == 2 and needle in out, out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1


def test_the_workflows_cli_without_a_server_is_a_one_line_error(tmp_path: Path) -> None:
    res = run_cli("workflows", "list", "--nats-url", f"nats://127.0.0.1:{free_port()}",
                  "--data-dir", str(tmp_path))
    assert res.returncode == 1 and res.stderr.startswith("error:"), res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
