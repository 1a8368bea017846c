"""``threadlog bench turn``: per-turn overhead of ``generate_text``, fully persisted.

The scripted zero-latency model (through litellm) answers every turn; each turn is a
``cmd.agent.generate`` request/reply that appends the prompt, the pending and final
assistant message and a usage event to JetStream before it replies. Measures p50/p95 of
the turn latency around turn 200 and turn 1000 of one thread (the window of turns just
before each mark), then the throughput of concurrent turns over 100 threads.
Targets: p50 <= 3 ms and p95 <= 10 ms at turn 1000.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from bench._report import now, rate, report
from handlers.agents.definition import Agent
from handlers.llm.call_settings import NO_BACKOFF, CallSettings
from threadlog.runtime import running
from threadlog.settings import Settings


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def amain(turns: int, window: int, threads: int, per_thread: int) -> None:
    agent = Agent(name="bench", model="scripted/bench", instructions="Answer briefly.",
                  call_settings=CallSettings(max_retries=0, backoff=NO_BACKOFF))
    with tempfile.TemporaryDirectory() as d:
        settings = Settings(data_dir=d)
        async with running(settings, agents=[agent]) as rt:
            c = rt.client("bench-user")
            tid = (await c.create_thread()).value["thread_id"]
            for _ in range(5):  # warm up litellm and the caches
                await c.generate_text("bench", tid, "warm up")
            lat: list[float] = []
            for i in range(turns):
                t0 = now()
                await c.generate_text("bench", tid, f"question number {i}")
                lat.append((now() - t0) * 1000)
            marks = {m: lat[max(0, m - window):m] for m in (200, 1000) if m <= turns}
            tids = [(await c.create_thread()).value["thread_id"] for _ in range(threads)]

            async def run_thread(t: str) -> None:
                for i in range(per_thread):
                    await c.generate_text("bench", t, f"q{i}")

            t0 = now()
            await asyncio.gather(*(run_thread(t) for t in tids))
            tput = rate(threads * per_thread, now() - t0)
    rows: list[tuple[str, object]] = []
    figures: dict[str, object] = {"turns": turns, "window": window}
    for m, vals in marks.items():
        p50, p95 = statistics.median(vals), pct(vals, 95)
        rows += [(f"turn {m}: p50 ms", p50), (f"turn {m}: p95 ms", p95)]
        figures |= {f"p50_ms_turn_{m}": round(p50, 2), f"p95_ms_turn_{m}": round(p95, 2)}
    rows.append((f"concurrent turns/s ({threads} threads)", tput))
    figures |= {"concurrent_threads": threads, "concurrent_turns_per_s": round(tput, 1),
                "target_p50_ms": 3, "target_p95_ms": 10}
    if 1000 in marks:
        figures["meets_target"] = (figures["p50_ms_turn_1000"] <= 3  # type: ignore[operator]
                                   and figures["p95_ms_turn_1000"] <= 10)  # type: ignore[operator]
    report("turn", rows, figures)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="threadlog bench turn")
    p.add_argument("--turns", type=int, default=1000)
    p.add_argument("--window", type=int, default=100, help="turns before each mark")
    p.add_argument("--threads", type=int, default=100)
    p.add_argument("--per-thread", type=int, default=10)
    args = p.parse_args(argv)
    asyncio.run(amain(args.turns, args.window, args.threads, args.per_thread))
