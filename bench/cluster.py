"""``threadlog bench cluster``: what the production shape costs and what a crash costs it.

In one run, the same append load (``bench.append``'s: concurrent threads, each append
with its version check and message id) against

- R1 on one embedded node with JetStream's default fsync (every 2 minutes): the
  ``threadlog serve`` default, the baseline;
- R1 on one embedded node with ``sync_interval: always``;
- R3 on the local 3-node cluster (``threadlog.cluster``) with the default fsync;
- R3 on the local 3-node cluster with ``sync_interval: always``: the production shape
  (deploy/nats, docker-compose.yml);

each the best of ``--rounds`` rounds, taken in turn so a busy machine weighs on all alike.
Then the node-kill drill (``threadlog.cluster_drill``) on a fresh R3 / always cluster:
kill -9 a follower, then the EVENTS stream's leader, under a steady load; figures:
acknowledged appends, acknowledged appends lost, the longest window without an
acknowledgement (``unavailable_s``, the leader's election) and each node's catch-up time.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from bench._report import report
from bench.append import run_store
from events import EventStore, EventStreamSpec
from events.connection import NatsEndpoint
from threadlog.cluster import LocalCluster
from threadlog.cluster_drill import node_kill_drill
from threadlog.embedded_nats import EmbeddedNats

Server = AbstractContextManager[Any]
SHAPES: dict[str, tuple[int, Callable[[Path], Server]]] = {
    "r1": (1, lambda d: EmbeddedNats(d)),
    "r1_always": (1, lambda d: EmbeddedNats(d, sync_interval="always")),
    "r3": (3, lambda d: LocalCluster(d, sync_interval=None)),
    "r3_always": (3, lambda d: LocalCluster(d)),
}


def _endpoint(server: Any) -> NatsEndpoint:
    endpoint: NatsEndpoint = server.endpoint
    return endpoint


async def appends_per_s(shape: str, threads: int, events: int, sequential: int
                        ) -> tuple[float, float]:
    """(appends/s with ``threads`` concurrent threads, ms per append of one thread)."""
    replicas, make = SHAPES[shape]
    with tempfile.TemporaryDirectory() as d, make(Path(d)) as server:
        nc = await _endpoint(server).connect()
        try:
            store = EventStore(nc, EventStreamSpec(name="BENCH", replicas=replicas))
            await store.setup()
            concurrent = await run_store(store, threads, events)
            one = await run_store(store, 1, sequential)
            return concurrent, 1000 / one
        finally:
            await nc.close()


async def _quiet(exc: Exception) -> None:
    """nats-py prints every failed reconnect attempt otherwise: the drill causes them."""


async def drill(writers: int, steady: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d, LocalCluster(d) as cluster:
        nc = await cluster.endpoint.connect(max_reconnect_attempts=-1, reconnect_time_wait=0.1,
                                            error_cb=_quiet)
        try:
            store = EventStore(nc, EventStreamSpec(name="EVENTS", replicas=3), timeout=2)
            await store.setup()
            res = await node_kill_drill(cluster, store, writers=writers, steady=steady)
        finally:
            await nc.close()
    return {"acknowledged": res.acknowledged, "lost": len(res.lost),
            "unavailable_s": round(res.unavailable_s, 2),
            "unavailable_after_follower_kill_s": round(res.unavailable_after_kill_s[0], 2),
            "unavailable_after_leader_kill_s": round(res.unavailable_after_kill_s[1], 2),
            "catch_up_s": [round(s, 2) for s in res.catch_up_s],
            "append_failures_retried": res.failures}


async def amain(threads: int, events: int, rounds: int, writers: int, steady: int) -> None:
    best: dict[str, float] = dict.fromkeys(SHAPES, 0.0)
    ms: dict[str, float] = dict.fromkeys(SHAPES, float("inf"))
    for _ in range(rounds):
        for shape in SHAPES:
            eps, one_ms = await appends_per_s(shape, threads, events, max(100, events // 20))
            best[shape], ms[shape] = max(best[shape], eps), min(ms[shape], one_ms)
    kill = await drill(writers, steady)
    rows: list[tuple[Any, ...]] = [
        ("R1, default fsync (2 min), appends/s", best["r1"]),
        ("R1, sync_interval always, appends/s", best["r1_always"]),
        ("R3 cluster, default fsync, appends/s", best["r3"]),
        ("R3 cluster, sync_interval always, appends/s", best["r3_always"]),
        ("R3 always as % of R1 default", 100 * best["r3_always"] / best["r1"]),
        ("one writer, ms per append: R1 / R1 always / R3 / R3 always",
         " / ".join(f"{ms[s]:.2f}" for s in SHAPES)),
        ("kill drill: acknowledged appends", kill["acknowledged"]),
        ("kill drill: acknowledged appends lost", kill["lost"], 0),
        ("kill drill: longest window without an ack, s", kill["unavailable_s"]),
        ("  after the follower's kill, s", kill["unavailable_after_follower_kill_s"]),
        ("  after the leader's kill, s", kill["unavailable_after_leader_kill_s"]),
        ("kill drill: catch-up after restart, s",
         " / ".join(f"{s:.2f}" for s in kill["catch_up_s"])),
    ]
    report("cluster", rows, {
        "r3_appends_per_s": round(best["r3_always"]), "r1_appends_per_s": round(best["r1"]),
        "r1_always_appends_per_s": round(best["r1_always"]),
        "r3_default_sync_appends_per_s": round(best["r3"]),
        "one_writer_ms_per_append": {s: round(ms[s], 2) for s in SHAPES},
        **kill, "threads": threads, "events": events, "rounds": rounds})


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="threadlog bench cluster")
    p.add_argument("--threads", type=int, default=100, help="threads written concurrently")
    p.add_argument("--events", type=int, default=10_000, help="appends per measurement")
    p.add_argument("--rounds", type=int, default=2, help="best of this many per shape")
    p.add_argument("--writers", type=int, default=4, help="kill drill: concurrent writers")
    p.add_argument("--steady", type=int, default=500,
                   help="kill drill: appends acknowledged between steps")
    args = p.parse_args(argv)
    asyncio.run(amain(args.threads, args.events, args.rounds, args.writers, args.steady))
