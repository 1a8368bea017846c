"""A workpool worker process for the tests: ``python -m tests.scheduler.workpool.worker_proc``.

Functions: ``sleep`` (args ``{"s": seconds}``) appends ``<work_id> <attempt>`` to
``runs.log`` when it starts, sleeps, returns the pid; ``record_done`` (on_complete)
appends ``<work_id> <kind>`` to ``completions.log``. Prints ``ready <worker id>`` once
pulling; stops cleanly on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import nats

from events import EventStore, EventStreamSpec
from scheduler.workpool import CompletionContext, WorkContext, Workpool


def append_line(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


async def main() -> None:
    ap = argparse.ArgumentParser()
    for a in ("--url", "--events-stream", "--pool", "--dir"):
        ap.add_argument(a, required=True)
    ap.add_argument("--creds")
    ap.add_argument("--ack-wait", type=float, default=30.0)
    ap.add_argument("--concurrency", type=int, default=4)
    opts = ap.parse_args()
    out = Path(opts.dir)
    kwargs: dict[str, Any] = {"user_credentials": opts.creds} if opts.creds else {}
    nc = await nats.connect(opts.url, **kwargs)
    store = EventStore(nc, EventStreamSpec(name=opts.events_stream))
    pool = Workpool(store, opts.pool, ack_wait=opts.ack_wait)

    @pool.function("sleep")
    async def sleep(ctx: WorkContext, args: dict[str, Any]) -> int:
        append_line(out / "runs.log", f"{ctx.work_id} {ctx.attempt}")
        await asyncio.sleep(float(args["s"]))
        return os.getpid()

    @pool.function("record_done")
    async def record_done(done: CompletionContext) -> None:
        append_line(out / "completions.log", f"{done.work_id} {done.result.kind}")

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with pool.worker(concurrency=opts.concurrency, drain_timeout=2.0) as worker:
        print("ready", worker.worker_id, flush=True)
        await stop.wait()
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
