"""SIGKILL a worker process at every persist point of a 4-step workflow (before and
after each append, and in the middle of each step), then let a new worker finish.

Checked per run: it completes; each step is recorded completed once; each step's side
effect ran once, except at most one step (the one in flight at the kill) that ran twice;
``completion_handled`` is recorded once and ``on_complete`` saw one key (it may run twice
only when the kill fell after it and before its record: at least once execution).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from events import EventStore
from events.workflow_events import run_aggregate
from scheduler.workflows import WorkflowClient, WorkflowConfig, Workflows
from threadlog.embedded_nats import EmbeddedNats

from .conftest import WorkerFactory
from .fault_worker import STEPS, register

ROOT = Path(__file__).resolve().parents[3]
PERSIST_POINTS = 2 * (2 * STEPS + 2)
"""before/after each of: step_started and step_completed per step, workflow_completed,
completion_handled."""


def spawn(nats_server: EmbeddedNats, store: EventStore, cfg: WorkflowConfig, name: str,
          out: Path, **kill: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FI_URL": nats_server.url, "FI_CREDS": str(nats_server.service_creds or ""),
           "FI_EVENTS": store.stream, "FI_STREAM": cfg.stream, "FI_PREFIX": cfg.prefix,
           "FI_NAME": name, "FI_DIR": str(out), "PYTHONPATH": str(ROOT),
           **{f"FI_{k.upper()}": str(v) for k, v in kill.items()}}
    return subprocess.Popen([sys.executable, "-m", "tests.scheduler.workflows.fault_worker"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def exited(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        assert time.monotonic() < deadline, "worker process did not die"
        await asyncio.sleep(0.05)  # polling a child process's exit, not state
    return proc.returncode


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def test_sigkill_at_every_persist_point_then_a_new_worker_finishes_each_run(
        nats_server: EmbeddedNats, store: EventStore, wf_config: WorkflowConfig,
        client: WorkflowClient, worker_factory: WorkerFactory, tmp_path: Path) -> None:
    scenarios: list[tuple[str, dict[str, int]]] = (
        [(f"fip{p}", {"kill_at": p}) for p in range(PERSIST_POINTS)]
        + [(f"fim{n}", {"kill_mid": n}) for n in range(1, STEPS + 1)])
    runs = {name: await client.start(name, on_complete="fi_complete") for name, _ in scenarios}
    procs = [spawn(nats_server, store, wf_config, name, tmp_path, **kill)
             for name, kill in scenarios]
    codes = [await exited(p) for p in procs]
    assert codes == [-signal.SIGKILL] * len(procs), [p.stderr.read() for p in procs
                                                     if p.stderr and p.returncode != -9]
    recovery = Workflows()
    for name, _ in scenarios:
        register(recovery, name, tmp_path)
    async with worker_factory(recovery):
        finals = await asyncio.gather(*(client.wait(r, timeout=30) for r in runs.values()))
    for (name, kill), st in zip(scenarios, finals, strict=True):
        run_id = runs[name]
        assert (st.state, st.result) == ("completed", 10), (name, st)
        recs = await store.read(run_aggregate(run_id))
        completed = [r.event.step_no for r in recs if r.type == "step_completed"]  # type: ignore[attr-defined]
        assert completed == [1, 2, 3, 4], (name, completed)
        effects = [len(lines(tmp_path / f"{run_id}.step{n}")) for n in range(1, STEPS + 1)]
        assert all(e >= 1 for e in effects) and sum(effects) - STEPS <= 1, (name, effects)
        assert [r.type for r in recs].count("completion_handled") == 1, name
        keys = lines(tmp_path / f"{run_id}.complete")
        assert len(set(keys)) == 1 and len(keys) <= 2, (name, keys)
        if len(keys) == 2:  # only a kill between on_complete and its record repeats it
            assert kill.get("kill_at") == PERSIST_POINTS - 2, (name, keys)
        mid = kill.get("kill_mid")
        if mid:
            assert effects[mid - 1] == 2, (name, effects)


async def test_a_killed_workers_run_is_taken_over_within_the_ack_wait_bound(
        nats_server: EmbeddedNats, store: EventStore, wf_config: WorkflowConfig,
        client: WorkflowClient, worker_factory: WorkerFactory, tmp_path: Path) -> None:
    proc = spawn(nats_server, store, wf_config, "takeover", tmp_path, kill_mid=2)
    run_id = await client.start("takeover", on_complete="fi_complete")
    recovery = Workflows()
    register(recovery, "takeover", tmp_path)
    assert await exited(proc) == -signal.SIGKILL
    killed_at = float((tmp_path / "killed-takeover").read_text().split()[0])
    async with worker_factory(recovery):
        st = await client.wait(run_id, timeout=30)
    assert st.state == "completed"
    recs = await store.read(run_aggregate(run_id))
    retried = [r for r in recs if r.type == "step_started" and r.envelope.data["step_no"] == 2]
    assert [r.envelope.data["attempt"] for r in retried] == [1, 2]
    takeover = retried[1].envelope.occurred_at.timestamp() - killed_at
    print(f"takeover after SIGKILL: {takeover:.2f} s (ack_wait {wf_config.ack_wait} s)")
    assert takeover <= wf_config.ack_wait + 1.5

