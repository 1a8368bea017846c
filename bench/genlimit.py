"""``threadlog bench genlimit``: what the generation limit costs a generation.

Two deployments, each on an embedded server of its own, alive together: one without a limit (no
admission at all), one with ``generation_parallelism`` set high enough never to make a
generation wait, so the difference is the admission alone (publish a permit, fetch one
from the shared consumer, ack it with the server's confirmation). Turns alternate
between the two (in-process ``Runtime.generate_text``, the scripted zero-latency model,
fully persisted), so a busy machine slows both alike. Also measured: one slot taken and
given back on its own (``GenerationSlots.slot``), without a generation.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from bench._report import now, report
from handlers.agents.definition import Agent
from handlers.llm.call_settings import NO_BACKOFF, CallSettings
from threadlog.runtime import running
from threadlog.settings import Settings

USER = "bench-user"


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def amain(turns: int, limit: int) -> None:
    agent = Agent(name="bench", model="scripted/bench",
                  call_settings=CallSettings(max_retries=0, backoff=NO_BACKOFF))
    lat: dict[str, list[float]] = {"off": [], "on": []}
    slot_ms: list[float] = []
    with tempfile.TemporaryDirectory() as d:
        def settings(name: str, parallelism: int | None) -> Settings:
            return Settings(data_dir=Path(d) / name, generation_parallelism=parallelism)

        async with running(settings("OFF", None), agents=[agent]) as off, \
                running(settings("ON", limit), agents=[agent]) as on:
            tids = {}
            for key, rt in (("off", off), ("on", on)):
                tids[key] = (await rt.client(USER).create_thread()).value["thread_id"]
                for _ in range(5):  # warm up litellm and the caches
                    await rt.generate_text("bench", USER, tids[key], "warm up")
            for i in range(turns):
                for key, rt in (("off", off), ("on", on)):
                    t0 = now()
                    await rt.generate_text("bench", USER, tids[key], f"question {i}")
                    lat[key].append((now() - t0) * 1000)
            slots = on.parts["generation_slots"]
            for i in range(turns):
                t0 = now()
                async with slots.slot(f"bench{i}"):
                    pass
                slot_ms.append((now() - t0) * 1000)
    p50 = {k: statistics.median(v) for k, v in lat.items()}
    p95 = {k: pct(v, 95) for k, v in lat.items()}
    rows: list[tuple[str, object]] = [
        ("turn p50 ms, no limit", p50["off"]), ("turn p50 ms, limit set", p50["on"]),
        ("turn p95 ms, no limit", p95["off"]), ("turn p95 ms, limit set", p95["on"]),
        ("admission cost p50 ms (difference)", p50["on"] - p50["off"]),
        ("slot enter+leave alone p50 ms", statistics.median(slot_ms)),
        ("slot enter+leave alone p95 ms", pct(slot_ms, 95))]
    report("genlimit", rows, {
        "turns": turns, "limit": limit,
        "p50_ms_no_limit": round(p50["off"], 2), "p50_ms_limit": round(p50["on"], 2),
        "p95_ms_no_limit": round(p95["off"], 2), "p95_ms_limit": round(p95["on"], 2),
        "admission_p50_ms": round(p50["on"] - p50["off"], 2),
        "slot_p50_ms": round(statistics.median(slot_ms), 3),
        "slot_p95_ms": round(pct(slot_ms, 95), 3)})


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="threadlog bench genlimit")
    p.add_argument("--turns", type=int, default=300)
    p.add_argument("--limit", type=int, default=1000,
                   help="the limit of the limited deployment (never reached)")
    args = p.parse_args(argv)
    asyncio.run(amain(args.turns, args.limit))
