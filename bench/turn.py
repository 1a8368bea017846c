"""``threadlog bench turn``: per-turn overhead of ``generate_text``, fully persisted.

The scripted zero-latency model (through litellm) answers every turn; each turn appends
the prompt, the pending and final assistant message and a usage event to JetStream
before it returns. Two paths, each on a thread of its own:

- request/reply: ``Client.generate_text``, a ``cmd.agent.generate`` request to the
  FastStream handler and its reply (what a remote caller sees);
- in-process: ``Runtime.generate_text``, the same generation called in the handlers'
  process (no request, no reply, no command log).

Measures p50/p95 of the turn latency around turn 200 and turn 1000 of one thread (the
window of turns just before each mark), for each path, then the throughput of concurrent
request/reply turns over 100 threads. Targets: p50 <= 3 ms and p95 <= 10 ms at turn 1000.
``meets_target`` judges the in-process path: ``generate_text`` called in the service, as
the peers' figures (OpenAI Agents SDK, LangGraph: in-process calls on SQLite) and Convex's
``generateText`` inside an action are; ``meets_target_request_reply`` judges the
request/reply path, which adds a NATS request, FastStream's handling and the command log.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
from collections.abc import Awaitable, Callable

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from bench._report import now, rate, report
from handlers.agents.definition import Agent
from handlers.llm.call_settings import NO_BACKOFF, CallSettings
from threadlog.runtime import running
from threadlog.settings import Settings

USER = "bench-user"
PATHS = (("request/reply", "", "meets_target_request_reply"),
         ("in-process", "in_process_", "meets_target"))
"""Path label, the prefix of its figures' keys, and its verdict's key."""


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def latencies(turn: Callable[[str], Awaitable[object]], turns: int) -> list[float]:
    """Milliseconds of each of ``turns`` turns (after 5 warm-up turns)."""
    for _ in range(5):  # warm up litellm and the caches
        await turn("warm up")
    lat: list[float] = []
    for i in range(turns):
        t0 = now()
        await turn(f"question number {i}")
        lat.append((now() - t0) * 1000)
    return lat


async def amain(turns: int, window: int, threads: int, per_thread: int) -> None:
    agent = Agent(name="bench", model="scripted/bench", instructions="Answer briefly.",
                  call_settings=CallSettings(max_retries=0, backoff=NO_BACKOFF))
    lat: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as d:
        settings = Settings(data_dir=d)
        async with running(settings, agents=[agent]) as rt:
            c = rt.client(USER)
            tid = (await c.create_thread()).value["thread_id"]
            lat["request/reply"] = await latencies(
                lambda prompt: c.generate_text("bench", tid, prompt), turns)
            tid = (await c.create_thread()).value["thread_id"]
            lat["in-process"] = await latencies(
                lambda prompt: rt.generate_text("bench", USER, tid, prompt), turns)
            tids = [(await c.create_thread()).value["thread_id"] for _ in range(threads)]

            async def run_thread(t: str) -> None:
                for i in range(per_thread):
                    await c.generate_text("bench", t, f"q{i}")

            t0 = now()
            await asyncio.gather(*(run_thread(t) for t in tids))
            tput = rate(threads * per_thread, now() - t0)
    rows: list[tuple[str, object, str]] = []
    figures: dict[str, object] = {"turns": turns, "window": window,
                                  "target_path": "in-process"}
    for path, key, verdict in PATHS:
        for m in (200, 1000):
            if m > turns:
                continue
            vals = lat[path][max(0, m - window):m]
            p50, p95 = statistics.median(vals), pct(vals, 95)
            target = m == 1000
            rows += [(f"{path} turn {m}: p50 ms", p50, "<= 3" if target else ""),
                     (f"{path} turn {m}: p95 ms", p95, "<= 10" if target else "")]
            figures |= {f"{key}p50_ms_turn_{m}": round(p50, 2),
                        f"{key}p95_ms_turn_{m}": round(p95, 2)}
            if target:
                figures[verdict] = p50 <= 3 and p95 <= 10
    rows.append((f"concurrent request/reply turns/s ({threads} threads)", tput, ""))
    figures |= {"concurrent_threads": threads, "concurrent_turns_per_s": round(tput, 1),
                "target_p50_ms": 3, "target_p95_ms": 10}
    report("turn", rows, figures)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="threadlog bench turn")
    p.add_argument("--turns", type=int, default=1000)
    p.add_argument("--window", type=int, default=100, help="turns before each mark")
    p.add_argument("--threads", type=int, default=100)
    p.add_argument("--per-thread", type=int, default=10)
    args = p.parse_args(argv)
    asyncio.run(amain(args.turns, args.window, args.threads, args.per_thread))
