"""Workpool test fixtures: pools with names of their own (WORK streams deleted at
teardown), a recorder of the test stream's events, and worker subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from events import EventStore, RecordedEvent, new_id
from scheduler.workpool import Workpool

ROOT = Path(__file__).resolve().parents[3]
PoolFactory = Callable[..., Workpool]


class Recorder:
    """Follows every event of the test's stream; ``until`` waits (bounded) for a
    condition over what arrived, without polling."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.events: list[RecordedEvent] = []
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Recorder:
        self._task = asyncio.create_task(self._follow())
        return self

    async def _follow(self) -> None:
        async for ev in self.store.watch():
            if ev.envelope.aggregate_type == "work":
                async with self._changed:
                    self.events.append(ev)
                    self._changed.notify_all()

    async def until(self, cond: Callable[[list[RecordedEvent]], bool],
                    timeout: float = 15.0) -> list[RecordedEvent]:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: cond(self.events))
        return list(self.events)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    def of(self, work_id: str, type_: str | None = None) -> list[RecordedEvent]:
        return [e for e in self.events if e.envelope.aggregate_id == work_id
                and (type_ is None or e.type == type_)]

    def count(self, type_: str) -> int:
        return sum(e.type == type_ for e in self.events)


@pytest.fixture
async def recorder(store: EventStore) -> AsyncIterator[Recorder]:
    rec = await Recorder(store).start()
    yield rec
    await rec.stop()


@pytest.fixture
async def pool_factory(nc: NATS, store: EventStore) -> AsyncIterator[PoolFactory]:
    """``pool_factory(**kwargs)``: a Workpool named uniquely on the test's event store."""
    names: list[str] = []

    def make(name: str | None = None, **kwargs: Any) -> Workpool:
        name = name or "t" + new_id()[:10]
        names.append(name)
        return Workpool(store, name, **kwargs)

    yield make
    js = nc.jetstream()
    for n in set(names):
        with contextlib.suppress(Exception):
            await js.delete_stream(f"WORK_{n}")


@dataclass
class WorkerProcess:
    """A worker in a Python subprocess (``tests.scheduler.workpool.worker_proc``)."""

    proc: asyncio.subprocess.Process
    worker_id: str = ""
    lines: list[str] = field(default_factory=list)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.kill()
                await self.proc.wait()


@pytest.fixture
async def spawn_worker(nats_server: Any, store: EventStore, tmp_path: Path
                       ) -> AsyncIterator[Callable[..., Any]]:
    """``await spawn_worker(pool_name, **options)``: a ready worker subprocess."""
    procs: list[WorkerProcess] = []
    creds = getattr(nats_server, "service_creds", None)

    async def spawn(pool: str, *, ack_wait: float = 30.0, concurrency: int = 4) -> WorkerProcess:
        args = [sys.executable, "-m", "tests.scheduler.workpool.worker_proc",
                "--url", nats_server.url, "--events-stream", store.stream, "--pool", pool,
                "--ack-wait", str(ack_wait), "--concurrency", str(concurrency),
                "--dir", str(tmp_path)]
        if creds:
            args += ["--creds", str(creds)]
        proc = await asyncio.create_subprocess_exec(
            *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=None,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        wp = WorkerProcess(proc)
        procs.append(wp)
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            line = (await proc.stdout.readline()).decode().strip()
        assert line.startswith("ready "), f"worker did not start: {line!r}"
        wp.worker_id = line.split(" ", 1)[1]
        return wp

    yield spawn
    for p in procs:
        await p.stop()


def read_lines(path: Path) -> list[list[str]]:
    """The lines of an append-only side-effect file, split on spaces."""
    if not path.exists():
        return []
    return [ln.split() for ln in path.read_text().splitlines() if ln.strip()]


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end before a start at a tie)."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals],
                    key=lambda p: (p[0], p[1]))
    best = cur = 0
    for _, d in points:
        cur += d
        best = max(best, cur)
    return best


def attempt_intervals(events: list[RecordedEvent]) -> list[tuple[float, float, str, str]]:
    """``(start, end, work_id, worker)`` of every finished attempt, from event times:
    ``work_started`` to the attempt's ``work_completed``/``work_failed``."""
    started: dict[tuple[str, int], RecordedEvent] = {}
    out = []
    for e in events:
        d = e.envelope.data
        key = (e.envelope.aggregate_id, d.get("attempt", 0))
        if e.type == "work_started":
            started[key] = e
        elif e.type in ("work_completed", "work_failed") and key in started:
            s = started[key]
            out.append((s.envelope.occurred_at.timestamp(), e.envelope.occurred_at.timestamp(),
                        key[0], s.envelope.data["worker"]))
    return out
