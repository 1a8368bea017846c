"""``threadlog bench append``: appended events/s with concurrency control and dedupe.

Each append carries ``Nats-Expected-Last-Subject-Sequence`` (+ the wildcard subject
header) and a ``Nats-Msg-Id``; threads are written concurrently, each thread's appends in
sequence (each needs the previous version). Beside it, raw nats-py ``publish_async`` of
the same payloads to the same server, in the same run.
Targets: >= 30,000 events/s and >= 50% of the raw rate with 1000 threads.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile

from nats.aio.client import Client as NATS

from bench._report import now, rate, report
from events import Aggregate, EventStore, EventStreamSpec, MessageSaved, TextPart, new_id
from threadlog.embedded_nats import EmbeddedNats


def event(tid: str, i: int) -> MessageSaved:
    return MessageSaved(message_id=f"m{i}", thread_id=tid, order=i, role="user",
                        content=[TextPart(text=f"message {i} of a benchmark thread")])


async def run_store(store: EventStore, threads: int, total: int) -> float:
    per = max(1, total // threads)
    tids = [f"b{threads}x{new_id()[:8]}{k}" for k in range(threads)]
    payloads = {t: [store.envelopes(Aggregate.thread(t), [event(t, i)])[0] for i in range(per)]
                for t in tids}

    async def one(tid: str) -> None:
        agg = Aggregate.thread(tid)
        version: int | str = "no_stream"
        for env in payloads[tid]:
            res = await store.append(agg, [env], version)  # type: ignore[arg-type]
            version = res.last_seq

    t0 = now()
    await asyncio.gather(*(one(t) for t in tids))
    return rate(per * threads, now() - t0)


async def run_raw(nc: NATS, store: EventStore, total: int) -> float:
    js = nc.jetstream(publish_async_max_pending=4000)
    tid = "raw" + new_id()[:8]
    envs = [store.envelopes(Aggregate.thread(tid), [event(tid, i)])[0] for i in range(total)]
    payloads = [e.to_bytes() for e in envs]
    subject = Aggregate.thread(tid).subject("message_saved")
    t0 = now()
    for p in payloads:
        await js.publish_async(subject, p)
    await js.publish_async_completed()
    return rate(total, now() - t0)


async def amain(events: int) -> None:
    with tempfile.TemporaryDirectory() as d, EmbeddedNats(d) as srv:
        nc = await srv.endpoint.connect()
        store = EventStore(nc, EventStreamSpec(name="BENCH"))
        await store.setup()
        raw = await run_raw(nc, store, events)
        results = {t: await run_store(store, t, events if t > 1 else min(events, 20_000))
                   for t in (1, 10, 1000)}
        await nc.close()
    pct = 100 * results[1000] / raw
    rows = [("raw publish_async events/s", raw)]
    rows += [(f"append, {t} thread(s), events/s", r) for t, r in results.items()]
    rows += [("1000 threads as % of raw", pct)]
    report("append", rows, {
        "events": events, "raw_publish_async_eps": round(raw),
        "append_1_thread_eps": round(results[1]), "append_10_threads_eps": round(results[10]),
        "append_1000_threads_eps": round(results[1000]), "pct_of_raw_1000": round(pct, 1),
        "target_eps": 30_000, "target_pct": 50,
        "meets_target": results[1000] >= 30_000 and pct >= 50})


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="threadlog bench append")
    p.add_argument("--events", type=int, default=100_000)
    args = p.parse_args(argv)
    asyncio.run(amain(args.events))
