"""Every Python block of README.md runs, offline, as the reader would run it: written to
a file in an empty directory and started with this interpreter (embedded NATS with auth,
the scripted model). A block may be preceded by a marker comment:

``<!-- doctest: setup=deployment expect="..." -->``

* ``setup=deployment``: a ``threadlog serve`` is running on a free port (the block's
  ``4222`` is replaced by it) and ``alice.creds`` (a user credential) is in the directory;
* ``setup=openai``: an OpenAI-compatible mock server runs on loopback and
  ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` point at it (the *Providers* example);
* ``expect="TEXT"``: the block's output must contain TEXT.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docs.openai_mock import OpenAIMock

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARKER = re.compile(r"<!--\s*doctest:(?P<args>.*?)-->")
CLI = [sys.executable, "-m", "threadlog.cli"]


@dataclass(frozen=True)
class Block:
    line: int
    heading: str
    code: str
    setup: str | None
    expect: str | None

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")
        return f"L{self.line}-{slug}"


def readme_blocks() -> list[Block]:
    blocks: list[Block] = []
    lines = README.read_text().splitlines()
    heading, marker = "", None
    i = 0
    while i < len(lines):
        ln = lines[i]
        if ln.startswith("#"):
            heading = ln.lstrip("# ")
        m = MARKER.search(ln)
        if m:
            marker = m.group("args")
        if ln.strip() == "```python":
            start = i + 1
            j = start
            while lines[j].strip() != "```":
                j += 1
            args = marker or ""
            setup = re.search(r"setup=(\w+)", args)
            expect = re.search(r'expect="([^"]*)"', args)
            blocks.append(Block(start, heading, "\n".join(lines[start:j]) + "\n",
                                setup.group(1) if setup else None,
                                expect.group(1) if expect else None))
            marker = None
            i = j
        i += 1
    return blocks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """``threadlog serve`` on a free port, with its data dir; stopped by pid."""
    port, data = free_port(), tmp_path / "deployment"
    proc = subprocess.Popen([*CLI, "serve", "--nats-port", str(port), "--data-dir", str(data)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in proc.stdout:  # bounded by the deadline and by the process's exit
            if "threadlog serving" in line:
                break
            assert time.monotonic() < deadline, "serve did not start"
        else:
            pytest.fail("serve exited before serving")
        yield port, data
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


BLOCKS = readme_blocks()


def test_the_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 4
    assert {b.setup for b in BLOCKS} >= {None, "deployment", "openai"}


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_block_runs(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    work = tmp_path / "work"
    work.mkdir()
    code = block.code
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "PYTHONPATH": str(ROOT)}
    env.pop("THREADLOG_NATS_URLS", None)
    mock = None
    if block.setup == "deployment":
        port, data = request.getfixturevalue("deployment")
        code = code.replace("4222", str(port))
        issued = subprocess.run([*CLI, "credentials", "issue", "--role", "user", "--user",
                                 "alice", "--data-dir", str(data), "--out",
                                 str(work / "alice.creds")],
                                capture_output=True, text=True, timeout=60)
        assert issued.returncode == 0, issued.stdout + issued.stderr
    elif block.setup == "openai":
        mock = OpenAIMock(answer="Hi from an OpenAI-compatible server.").__enter__()
        env.update(OPENAI_BASE_URL=mock.base_url, OPENAI_API_KEY="sk-test-key")
    else:
        assert block.setup is None, f"unknown setup {block.setup!r}"
    (work / "example.py").write_text(code)
    try:
        res = subprocess.run([sys.executable, "example.py"], cwd=work, env=env,
                             capture_output=True, text=True, timeout=180)
    finally:
        if mock is not None:
            mock.__exit__(None, None, None)
    assert res.returncode == 0, f"README line {block.line}:\n{res.stdout}\n{res.stderr}"
    if block.expect is not None:
        assert block.expect in res.stdout, res.stdout
    if mock is not None:  # the block really called the server, with the key
        assert mock.requests and mock.auth[0] == "Bearer sk-test-key"
