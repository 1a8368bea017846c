"""``threadlog bench rebuild [--events N] [--batch-max N]``: full rebuild rate of the views.

Starts its own nats-server, fills the EVENTS stream with N mixed events (threads, messages
with status changes and finalization, tool calls, usage, some thread deletions with their
purge), then measures on the same stream:

1. raw: the projector's ordered feed + JSON decode of every event, nothing else;
2. rebuild: a full rebuild into a fresh DuckDB file (all views).

Prints a table and, as the last line, one JSON object of the figures. Targets: rebuild
>= 100,000 events/s, >= 50% of the raw rate, peak RSS < 500 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from bench._report import PeakRss, report
from events import Aggregate, EventEnvelope, EventStore, EventStreamSpec
from projections.feed import OrderedFeed
from projections.projector import Projector, ProjectorConfig, run_until_caught_up
from threadlog.embedded_nats import EmbeddedNats

_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


def _env(seq: int, type_: str, agg_type: str, agg_id: str, user: str,
         data: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": f"e{seq:x}", "type": type_, "version": 1,
            "occurred_at": (_EPOCH + timedelta(seconds=seq)).isoformat().replace("+00:00", "Z"),
            "aggregate_type": agg_type, "aggregate_id": agg_id, "user_id": user,
            "causation_id": None, "correlation_id": None, "data": data}


def mixed_events(n: int, *, seed: int = 7, delete_every: int = 50
                 ) -> Iterator[tuple[str, dict[str, Any]]]:
    """``n`` events ``(subject, envelope dict)`` of a plausible agent workload.

    Per turn: a user message, an assistant message saved pending then finalized (with
    usage), a usage record, sometimes a tool call (requested, completed or failed) or a
    status change or a metadata update; a new thread every few turns. Every
    ``delete_every``-th thread is deleted at its end (the caller purges it).
    Envelopes have the shape of :class:`events.EventEnvelope` (checked by the caller).
    """
    rnd = random.Random(seed)
    count = 0
    t_no = 0
    text = "The quick brown fox jumps over the lazy dog. " * 3
    while True:
        t_no += 1
        user = f"user{rnd.randrange(200)}"
        tid = f"t{seed}x{t_no}"
        agg = Aggregate.thread(tid)
        turns = rnd.randrange(2, 8)

        def ev(type_: str, data: dict[str, Any], *, a: Aggregate = agg,
               who: str = user) -> tuple[str, dict[str, Any]]:
            nonlocal count
            count += 1
            return a.subject(type_), _env(count, type_, a.type, a.id, who, data)

        batch = [ev("thread_created", {"thread_id": tid, "user_id": user, "title": f"T{t_no}",
                                       "summary": None, "metadata": {"n": t_no}})]
        for turn in range(turns):
            um, am = f"{tid}m{turn}u", f"{tid}m{turn}a"
            usage = {"prompt_tokens": 100 + turn, "completion_tokens": 20, "total_tokens":
                     120 + turn, "reasoning_tokens": 0, "cached_input_tokens": 50,
                     "cache_write_tokens": 0}
            batch.append(ev("message_saved", {
                "message_id": um, "thread_id": tid, "order": turn, "step_order": 0,
                "role": "user", "content": [{"type": "text", "text": text}],
                "status": "success"}))
            batch.append(ev("message_saved", {
                "message_id": am, "thread_id": tid, "order": turn, "step_order": 1,
                "role": "assistant", "content": [], "status": "pending", "agent_name": "bench",
                "model": "gpt-bench", "provider": "scripted"}))
            r = rnd.random()
            if r < 0.2:
                call = f"c{turn}"
                batch.append(ev("tool_call_requested", {
                    "thread_id": tid, "message_id": am, "tool_call_id": call,
                    "tool_name": "lookup", "args": {"q": turn}}))
                if r < 0.15:
                    batch.append(ev("tool_call_completed", {
                        "thread_id": tid, "message_id": am, "tool_call_id": call,
                        "tool_name": "lookup", "result": {"ok": True}}))
                else:
                    batch.append(ev("tool_call_failed", {
                        "thread_id": tid, "message_id": am, "tool_call_id": call,
                        "tool_name": "lookup", "error": "boom"}))
            elif r < 0.3:
                batch.append(ev("message_status_changed", {
                    "message_id": am, "thread_id": tid, "status": "pending"}))
            batch.append(ev("message_finalized", {
                "message_id": am, "thread_id": tid, "status": "success",
                "content": [{"type": "text", "text": text}], "usage": usage,
                "finish_reason": "stop", "model": "gpt-bench"}))
            uagg = Aggregate("usage", user)
            batch.append(ev("usage_recorded", {
                "call_id": f"{am}call", "user_id": user, "thread_id": tid,
                "agent_name": "bench", "model": "gpt-bench", "provider": "scripted",
                "usage": usage, "cost": 0.001, "kind": "completion"}, a=uagg))
        if rnd.random() < 0.2:
            batch.append(ev("thread_metadata_updated", {"thread_id": tid, "title": "renamed"}))
        if t_no % delete_every == 0:
            batch.append(ev("thread_deleted", {"thread_id": tid}))
        for item in batch:
            yield item
            n -= 1
            if n == 0:
                return


async def fill(nc: Any, stream: str, n: int, *, seed: int = 7) -> tuple[int, list[str]]:
    """Publish ``n`` mixed events (publish_async); purge deleted threads as the log does.

    Returns the stream's last sequence and the deleted thread ids.
    """
    js = nc.jetstream(publish_async_max_pending=4000)
    deleted: list[str] = []
    for i, (subject, env) in enumerate(mixed_events(n, seed=seed)):
        if i % 5000 == 0:  # the generated shape is exactly the envelope's
            EventEnvelope.model_validate(env).decode()
        if env["type"] == "thread_deleted":
            deleted.append(env["aggregate_id"])
        await js.publish_async(subject, json.dumps(env).encode(), stream=stream)
    await js.publish_async_completed()
    store = EventStore(nc, EventStreamSpec(name=stream))
    for tid in deleted:
        await store.purge(Aggregate.thread(tid), keep_last=1)
    return await store.last_seq(), deleted



async def raw_rate(url: Any, nc: Any, stream: str, last_seq: int) -> tuple[int, float]:
    """The ordered feed + JSON decode of the whole stream: (events, seconds)."""
    feed = OrderedFeed(url, nc, stream)
    t0 = time.perf_counter()
    await feed.start(1)
    count = 0
    loads = json.loads
    try:
        while True:
            items = await feed.take(1000, timeout=5.0)
            if not items:
                break
            for _, _, payload in items:
                loads(payload)
            count += len(items)
            if items[-1][0] >= last_seq or (feed.pending == 0 and not feed.buffered):
                break
    finally:
        await feed.close()
    return count, time.perf_counter() - t0


async def run(n: int, batch_max: int, work: Path, console: Console, *,
              catchup: int = 30_000, threads: int | None = None) -> dict[str, Any]:
    srv = EmbeddedNats(work / "nats").start()
    try:
        nc = await srv.endpoint.connect()
        try:
            spec = EventStreamSpec(name="EVENTS")
            await EventStore(nc, spec).setup()
            t0 = time.perf_counter()
            # Filled by a child process, so this process's peak RSS is the rebuild's alone.
            out = subprocess.run(
                [sys.executable, "-c", "import asyncio, json, sys, nats, bench.rebuild as b\n"
                 "async def go():\n"
                 "    nc = await nats.connect(sys.argv[1], user_credentials=sys.argv[4])\n"
                 "    r = await b.fill(nc, sys.argv[2], int(sys.argv[3]))\n"
                 "    await nc.close()\n"
                 "    print(json.dumps([r[0], len(r[1])]))\n"
                 "asyncio.run(go())", srv.url, spec.name, str(n), str(srv.service_creds)],
                check=True, capture_output=True, text=True)
            last_seq, n_deleted = json.loads(out.stdout.strip().splitlines()[-1])
            fill_s = time.perf_counter() - t0
            info = await nc.jetstream().stream_info(spec.name)
            stored = int(info.state.messages)
            console.print(f"filled {n:,} events in {fill_s:.1f}s ({n / fill_s:,.0f}/s); "
                          f"{stored:,} stored after purging {n_deleted} deleted threads")
            raw_n, raw_s = await raw_rate(srv.endpoint, nc, spec.name, last_seq)
            console.print(f"raw feed + decode: {raw_n:,} events in {raw_s:.2f}s")
            db = work / "rebuild.duckdb"
            projector = Projector(ProjectorConfig(
                db_path=db, stream=spec.name, batch_max=batch_max, catchup_batch_max=catchup,
                duckdb_threads=threads), nc, srv.endpoint)
            with PeakRss() as rss:
                applied, secs = await run_until_caught_up(projector)
                counts = {t: projector.cursor().execute(f'SELECT count(*) FROM "{t}"')
                          .fetchone() for t in ("threads", "messages", "tool_calls", "usage")}
                await projector.close()
            db_mb = db.stat().st_size / 1e6
        finally:
            await nc.close()
    finally:
        srv.stop()
    rate, raw = applied / secs, raw_n / raw_s
    return {"events_published": n, "events_stored": stored,
            "events_applied": applied, "rebuild_s": round(secs, 3),
            "rebuild_events_per_s": round(rate), "raw_events_per_s": round(raw),
            "pct_of_raw": round(100 * rate / raw, 1), "peak_rss_mb": round(rss.peak / 2**20, 1),
            "db_mb": round(db_mb, 1), "batch_max": batch_max, "catchup_batch_max": catchup,
            "duckdb_threads": threads,
            "rows": {k: int(v[0]) if v else 0 for k, v in counts.items()},
            "targets_met": {"events_per_s>=100k": rate >= 100_000, "pct_of_raw>=50":
                            rate >= 0.5 * raw, "peak_rss<500MB": rss.peak < 500 * 2**20},
            "date": datetime.now(UTC).date().isoformat()}


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="threadlog bench rebuild", description=__doc__)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--batch-max", type=int, default=1000)
    p.add_argument("--catchup-batch-max", type=int, default=30_000)
    p.add_argument("--duckdb-threads", type=int, default=None)
    p.add_argument("--workdir", type=Path, default=None, help="keep files here")
    args = p.parse_args(argv)
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="bench-rebuild-") as tmp:
        work = args.workdir or Path(tmp)
        result = asyncio.run(run(args.events, args.batch_max, work, console,
                                 catchup=args.catchup_batch_max, threads=args.duckdb_threads))
    report("rebuild", [
        ("events stored", f"{result['events_stored']:,}"),
        ("raw feed + decode", f"{result['raw_events_per_s']:,}/s"),
        ("rebuild", f"{result['rebuild_events_per_s']:,}/s", ">= 100,000/s"),
        ("rebuild / raw", f"{result['pct_of_raw']}%", ">= 50%"),
        ("peak RSS", f"{result['peak_rss_mb']} MB", "< 500 MB"),
        ("DuckDB file", f"{result['db_mb']} MB", "")], result)
