"""``threadlog bench load``: many concurrent clients of mixed commands and queries, auth on.

``--clients`` end users (default 50), each on its own connection with a *user*
credential (the server enforces it: each publishes only its own subjects), run for
``--seconds`` a mix of ``cmd.<u>.messages.save`` (40 %), ``query.<u>.threads.list``
(20 %), ``query.<u>.messages.list`` (20 %), ``cmd.<u>.thread.create`` (10 %) and
``query.<u>.budget.status`` (10 %), one request at a time per client, against
``threadlog serve``'s parts (handlers, projector, scheduler, live relay) on an embedded
nats-server. Reports throughput and p50/p95/p99 per subject and overall. Target:
overall p99 <= 50 ms on this machine.

Closed loop by default: each client sends its next request as soon as the previous one
is answered, so the latency is about ``clients / throughput`` once the process is busy.
``--rate R`` runs open loop instead: requests arrive at R per second in all (Poisson,
spread over the clients) and each latency counts from the request's scheduled arrival,
so time spent queued behind a slow request is included (no coordinated omission).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from bench._report import now, report
from events import ThreadlogError
from handlers.client import Client
from threadlog.parts import serve_parts
from threadlog.runtime import running
from threadlog.settings import Settings

MIX = (("cmd.messages.save", 40), ("query.threads.list", 20), ("query.messages.list", 20),
       ("cmd.thread.create", 10), ("query.budget.status", 10))


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def client_loop(client: Client, deadline: float, rnd: random.Random,
                      lat: dict[str, list[float]], errors: dict[str, int],
                      mean_gap_s: float | None = None) -> None:
    created = await client.create_thread(title="load")
    tid, seq = created.value["thread_id"], created.seq
    names = [n for n, _ in MIX]
    weights = [float(w) for _, w in MIX]
    i = 0
    due = now()
    while now() < deadline:
        op = rnd.choices(names, weights)[0]
        if mean_gap_s is not None:  # open loop: wait for this request's arrival time
            due += rnd.expovariate(1 / mean_gap_s)
            if due > deadline:
                break
            if due > now():
                await asyncio.sleep(due - now())
        t0 = due if mean_gap_s is not None else now()
        try:
            if op == "cmd.messages.save":
                seq = (await client.save_message(tid, "user", f"message {i} of the load run")
                       ).seq or seq
            elif op == "query.threads.list":
                await client.query("query.threads.list", limit=20)
            elif op == "query.messages.list":
                await client.query("query.messages.list", thread_id=tid, limit=20,
                                   min_seq=seq)  # read your writes: the thread may be new
            elif op == "cmd.thread.create":
                created = await client.create_thread(title=f"load {i}")
                tid, seq = created.value["thread_id"], created.seq
            else:
                await client.query("query.budget.status")
        except ThreadlogError as exc:
            errors[f"{op}: {exc.code}"] += 1
            continue
        lat[op].append((now() - t0) * 1000)
        i += 1


async def amain(clients: int, seconds: float, rate: float | None = None) -> None:
    lat: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    with tempfile.TemporaryDirectory() as d:
        async with running(Settings(data_dir=Path(d)), extra_parts=serve_parts()) as rt:
            assert rt.embedded is not None
            conns = [await Client.connect(rt.embedded.endpoint_for("user", f"user{i}",
                                                                   Path(d) / f"u{i}.creds"))
                     for i in range(clients)]
            try:
                deadline = now() + seconds
                t0 = now()
                gap = clients / rate if rate else None
                await asyncio.gather(*(client_loop(c, deadline, random.Random(i), lat, errors,
                                                   gap) for i, c in enumerate(conns)))
                elapsed = now() - t0
            finally:
                for c in conns:
                    await c.close()
    every = [v for vals in lat.values() for v in vals]
    total = len(every)
    rows: list[tuple[str, object, str]] = []
    for op, _ in MIX:
        vals = lat[op]
        rows.append((f"{op}: n / p50 / p95 / p99 ms",
                     f"{len(vals)} / {pct(vals, 50):.1f} / {pct(vals, 95):.1f} / "
                     f"{pct(vals, 99):.1f}", ""))
    p50, p95, p99 = pct(every, 50), pct(every, 95), pct(every, 99)
    rows += [("requests/s", total / elapsed, ""), ("overall p50 ms", p50, ""),
             ("overall p95 ms", p95, ""), ("overall p99 ms", p99, "<= 50"),
             ("errors", sum(errors.values()), "0")]
    figures = {"clients": clients, "seconds": seconds, "requests": total,
               "mode": f"open loop, {rate}/s" if rate else "closed loop",
               "requests_per_s": round(total / elapsed, 1), "p50_ms": round(p50, 2),
               "p95_ms": round(p95, 2), "p99_ms": round(p99, 2),
               "errors": sum(errors.values()), "error_codes": dict(errors),
               "per_subject": {op: {"n": len(lat[op]), "p50_ms": round(pct(lat[op], 50), 2),
                                    "p95_ms": round(pct(lat[op], 95), 2),
                                    "p99_ms": round(pct(lat[op], 99), 2)} for op, _ in MIX},
               "target_p99_ms": 50, "meets_target": p99 <= 50 and not errors}
    report(f"load ({figures['mode']})", rows, figures, name="load")


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="threadlog bench load")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--rate", type=float, default=None,
                   help="open loop: requests per second in all (default: closed loop)")
    args = p.parse_args(argv)
    asyncio.run(amain(args.clients, args.seconds, args.rate))
