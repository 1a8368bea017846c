"""``threadlog bench freshness [--n N] [--via store|command]``: write to row visible.

Starts its own nats-server and, in this process, the projector with its query subjects
(as ``threadlog serve`` does). Each sample: save one message, then ask
``query.messages.get`` for it with ``min_seq`` = the write's sequence; the time from
sending the write to having the reply with the row. Targets: p50 <= 10 ms, p99 <= 50 ms.

``--via store`` (default) appends the ``message_saved`` event with ``EventStore.append``;
``--via command`` sends ``cmd.messages.save`` to the command handlers (started here too)
and uses the reply's ``seq``. Only :class:`Writer` differs between the two.

Prints a table and, as the last line, one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from nats.aio.client import Client as NATS

from bench._report import report
from events import (
    Aggregate,
    EventStore,
    EventStreamSpec,
    MessageSaved,
    TextPart,
    ThreadCreated,
    new_id,
)
from projections.projector import Projector, ProjectorConfig
from projections.queries import QueryService, serve_queries
from threadlog.embedded_nats import EmbeddedNats


class Writer(Protocol):
    async def setup(self, user: str, thread: str) -> None: ...

    async def save(self, user: str, thread: str, order: int) -> tuple[str, int]:
        """Save one message; return its id and the stream sequence of the write."""


class StoreWriter:
    """Appends events directly (no command handler in the path)."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def setup(self, user: str, thread: str) -> None:
        await self.store.append(Aggregate.thread(thread),
                                [ThreadCreated(thread_id=thread, user_id=user)], user_id=user)

    async def save(self, user: str, thread: str, order: int) -> tuple[str, int]:
        mid = new_id()
        r = await self.store.append(Aggregate.thread(thread), [MessageSaved(
            message_id=mid, thread_id=thread, order=order, role="user",
            content=[TextPart(text=f"message {order}")])], user_id=user)
        return mid, r.last_seq


class CommandWriter:
    """Sends ``cmd.thread.create`` / ``cmd.messages.save`` to the handlers (in process)."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc

    async def _request(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        msg = await self.nc.request(subject, json.dumps(body).encode(), timeout=10)
        reply: dict[str, Any] = json.loads(msg.data)
        if not reply.get("ok"):
            raise RuntimeError(f"{subject}: {reply.get('error')}")
        return reply

    async def setup(self, user: str, thread: str) -> None:
        await self._request(f"cmd.{user}.thread.create", {"command_id": new_id(), "user_id": user,
                                                  "thread_id": thread})

    async def save(self, user: str, thread: str, order: int) -> tuple[str, int]:
        mid = new_id()
        reply = await self._request(f"cmd.{user}.messages.save", {
            "command_id": new_id(), "user_id": user, "thread_id": thread,
            "messages": [{"message_id": mid, "role": "user",
                          "content": [{"type": "text", "text": f"message {order}"}]}]})
        return mid, int(reply["seq"])


async def _start_handlers(url: Any, store: EventStore) -> Any:
    from handlers.app import build_handlers, make_broker

    broker = make_broker(url)
    await build_handlers(broker, store, None)
    await broker.start()
    return broker


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def run(n: int, warmup: int, via: str, work: Path) -> dict[str, Any]:
    srv = EmbeddedNats(work / "nats").start()
    broker = None
    try:
        nc = await srv.endpoint.connect()
        store = EventStore(nc, EventStreamSpec())
        await store.setup()
        projector = Projector(ProjectorConfig(db_path=work / "fresh.duckdb"), nc, srv.endpoint)
        await projector.open()
        server = await serve_queries(nc, QueryService(projector))
        task = asyncio.create_task(projector.run())
        writer: Writer
        if via == "command":
            broker = await _start_handlers(srv.endpoint, store)
            writer = CommandWriter(nc)
        else:
            writer = StoreWriter(store)
        user, thread = "bench", new_id()
        await writer.setup(user, thread)
        samples: list[float] = []
        for i in range(warmup + n):
            t0 = time.perf_counter()
            mid, seq = await writer.save(user, thread, i)
            msg = await nc.request(f"query.{user}.messages.get", json.dumps({
                "user_id": user, "message_ids": [mid], "min_seq": seq}).encode(), timeout=10)
            elapsed = time.perf_counter() - t0
            reply = json.loads(msg.data)
            assert reply["ok"] and reply["result"]["items"][0]["message_id"] == mid, reply
            if i >= warmup:
                samples.append(elapsed * 1000)
        projector.stop()
        await task
        await server.close()
        await projector.close()
        if broker is not None:
            await broker.stop()
        await nc.close()
    finally:
        srv.stop()
    p50, p95, p99 = (percentile(samples, q) for q in (50, 95, 99))
    return {"via": via, "samples": n, "p50_ms": round(p50, 2),
            "p95_ms": round(p95, 2), "p99_ms": round(p99, 2),
            "mean_ms": round(statistics.fmean(samples), 2), "max_ms": round(max(samples), 2),
            "targets_met": {"p50<=10ms": p50 <= 10, "p99<=50ms": p99 <= 50},
            "date": datetime.now(UTC).date().isoformat()}


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="threadlog bench freshness", description=__doc__)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--via", choices=["store", "command"], default="store")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-freshness-") as tmp:
        result = asyncio.run(run(args.n, args.warmup, args.via, Path(tmp)))
    report(f"freshness: write -> row visible in query.messages.get (via {result['via']})",
           [("p50", f"{result['p50_ms']} ms", "<= 10 ms"), ("p95", f"{result['p95_ms']} ms"),
            ("p99", f"{result['p99_ms']} ms", "<= 50 ms"), ("max", f"{result['max_ms']} ms")],
           result, name="freshness")
