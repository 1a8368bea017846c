"""``threadlog bench concurrency``: many durable generations at once on one process.

``--generations`` (200) generations are started at once over request/reply
(``Client.generate_text``), each on a thread of its own: two model calls of
``--latency`` (1 s) through litellm's scripted provider with one tool step between, all
persisted (prompt, pending message, tool call and result, final message, usage) and
durable (each in the generation queue until finished). One handler process serves them
(the issue's target), or with ``--workers N`` N more handler processes join its queue
group (what spreading the intake over processes does on this machine).

Figures: makespan (first request sent to last reply), ideal = 2 x latency, efficiency =
ideal / makespan (target >= 0.9). The last line is one JSON object with ``generations``,
``makespan_s``, ``ideal_s`` and ``efficiency``.

Diagnostic, with ``--direct-provider``: the same threadlog run once more with
``litellm.acompletion`` replaced, for the ``scripted/`` model only, by a direct call of
the scripted provider's handler (what it answers, without litellm's per-call setup, its
worker-thread hop and its response post-processing): what threadlog's own intake allows
on this machine (``efficiency_direct_provider``). Never how threadlog runs: a diagnostic.

Baseline, measured in the same run (``--no-baseline`` skips it): the same 200 x two model
calls made by litellm alone in this process, through threadlog's ``call_model`` (the
path every generation takes: same tools, same messages, same litellm tuning) and nothing
else: no NATS, no persistence, no handler. Its efficiency (``litellm_only_efficiency``)
is the ceiling a one-process handler reaches on this machine through litellm; its CPU
per model call is ``litellm_cpu_ms_per_call``. Both runs start with the process's
objects frozen out of the collector's way, as ``running()`` does (``threadlog.gc_tuning``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from pydantic import BaseModel

from bench._report import now, report
from handlers.agents.definition import Agent
from handlers.llm.call_settings import NO_BACKOFF, CallSettings
from handlers.llm.scripted import Reply, ScriptedRequest, scripted
from handlers.llm.tools import ToolContext, tool
from threadlog.runtime import running
from threadlog.settings import Settings

USER = "bench-user"


class Lookup(BaseModel):
    q: str


@tool
async def lookup(ctx: ToolContext[Any], args: Lookup) -> str:
    """Look something up."""
    return f"found {args.q}"


def respond(request: ScriptedRequest) -> Reply:
    if any(m.get("role") == "tool" for m in request.messages):
        return Reply.text("done")
    return Reply.tool_call("lookup", {"q": "x"})


def bench_agents(latency: float) -> list[Agent]:
    scripted.configure("conc", latency_s=latency, responder=respond)
    scripted.configure("warm", responder=respond)
    settings_ = CallSettings(max_retries=0, backoff=NO_BACKOFF)
    return [Agent(name=n, model=f"scripted/{n}", tools=[lookup], call_settings=settings_)
            for n in ("conc", "warm")]


async def serve_worker(url: str, creds: str, latency: float, data_dir: str) -> None:
    """``--serve``: one more handler process on the benchmark's server, until SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    settings = Settings(nats_urls=[url], nats_creds=creds or None, data_dir=data_dir)
    async with running(settings, agents=bench_agents(latency)):  # warms litellm up
        print("ready", flush=True)
        await stop.wait()


async def start_workers(n: int, url: str, creds: str, latency: float, base: str
                        ) -> list[subprocess.Popen[str]]:
    """N handler processes, each ready (warmed up) before this returns; the wait runs
    in a thread: their warm-up requests may be served by this process's handlers."""
    procs = []
    for i in range(n):
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.concurrency", "--serve", url, "--creds", creds,
             "--latency", str(latency), "--data-dir", os.path.join(base, f"w{i}")],
            stdout=subprocess.PIPE, text=True)
        procs.append(proc)
    for proc in procs:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        if line.strip() != "ready":
            stop_workers(procs)
            raise RuntimeError("a benchmark worker did not start")
    return procs


def stop_workers(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def litellm_only(generations: int, latency: float) -> tuple[float, float]:
    """The baseline: ``generations`` x (model call, tool result, model call) through
    ``call_model`` alone. Returns (makespan seconds, CPU milliseconds per model call)."""
    import gc
    import time

    from handlers.llm.model_call import call_model

    agent = bench_agents(latency)[0]
    first: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
    second: list[dict[str, Any]] = [*first,
              {"role": "assistant", "content": None, "tool_calls": [{
                  "id": "c1", "type": "function",
                  "function": {"name": "lookup", "arguments": '{"q": "x"}'}}]},
              {"role": "tool", "tool_call_id": "c1", "content": "found x"}]

    async def one(model: str) -> None:
        r1 = await call_model(model, first, tools=agent.tools, settings=agent.call_settings)
        r2 = await call_model(model, second, tools=agent.tools, settings=agent.call_settings)
        assert r1.tool_calls and r2.text == "done"

    await one("scripted/warm")  # litellm's lazy setup, as running() warms it
    gc.freeze()
    try:
        cpu0, t0 = time.process_time(), now()
        await asyncio.gather(*(one(agent.model) for _ in range(generations)))
        makespan, cpu = now() - t0, time.process_time() - cpu0
    finally:
        gc.unfreeze()
    return makespan, cpu * 1000 / (2 * generations)


@contextlib.contextmanager
def direct_provider() -> Iterator[None]:
    """``--direct-provider`` (see the module): inside, ``scripted/`` model calls skip
    litellm's dispatch; streamed calls and other models go through litellm."""
    from handlers.llm.litellm_loader import load_litellm
    from handlers.llm.scripted.provider import ScriptedLLM

    litellm = load_litellm()
    real, handler = litellm.acompletion, ScriptedLLM()

    async def direct(**request: Any) -> Any:
        if not str(request.get("model", "")).startswith("scripted/") or request.get("stream"):
            return await real(**request)
        optional = {k: request[k] for k in ("tools", "tool_choice", "response_format")
                    if request.get(k) is not None}
        return await handler.acompletion(request["model"].removeprefix("scripted/"),
                                         request["messages"], optional)

    litellm.acompletion = direct
    try:
        yield
    finally:
        litellm.acompletion = real


async def one_run(generations: int, latency: float, workers: int
                  ) -> tuple[float, list[Any]]:
    """Start a runtime (and ``workers`` more handler processes), then time
    ``generations`` concurrent generations: (makespan, results)."""
    agents = bench_agents(latency)
    with tempfile.TemporaryDirectory() as d:
        async with running(Settings(data_dir=d), agents=agents) as rt:
            procs: list[subprocess.Popen[str]] = []
            try:
                if workers:
                    assert rt.embedded is not None
                    procs = await start_workers(workers, rt.urls[0],
                                                str(rt.embedded.service_creds or ""),
                                                latency, d)
                c = rt.client(USER)
                c.timeout = 60.0
                warm = (await c.create_thread()).value["thread_id"]
                await c.generate_text("warm", warm, "warm up")
                tids = await asyncio.gather(*(c.create_thread() for _ in range(generations)))
                t0 = now()
                res = await asyncio.gather(*(c.generate_text("conc", t.value["thread_id"],
                                                             "go") for t in tids))
                return now() - t0, res
            finally:
                stop_workers(procs)


async def amain(generations: int, latency: float, workers: int = 0,
                baseline: bool = True, direct: bool = False) -> None:
    base = await litellm_only(generations, latency) if baseline else None
    makespan, res = await one_run(generations, latency, workers)
    direct_makespan, direct_res = None, list[Any]()
    if direct:
        with direct_provider():
            direct_makespan, direct_res = await one_run(generations, latency, workers)
    ok = sum(1 for r in res if r.value["text"] == "done" and r.value["steps"] == 2)
    ideal = 2 * latency
    eff = ideal / makespan
    rows: list[tuple[str, Any, str]] = [
        ("generations", generations, ""), ("handler processes", 1 + workers, ""),
        ("succeeded", ok, ""), ("makespan s", makespan, ""), ("ideal s", ideal, ""),
        ("efficiency", f"{eff:.3f}", ">= 0.9")]
    figures: dict[str, Any] = {
        "bench": "concurrency", "generations": generations, "processes": 1 + workers,
        "succeeded": ok, "makespan_s": round(makespan, 3), "ideal_s": ideal,
        "efficiency": round(eff, 3), "meets_target": eff >= 0.9 and ok == generations}
    if base is not None:
        rows += [("litellm alone: makespan s", base[0], ""),
                 ("litellm alone: efficiency", f"{ideal / base[0]:.3f}", "(ceiling)"),
                 ("litellm alone: CPU ms per call", f"{base[1]:.2f}", ""),
                 ("efficiency / litellm alone", f"{eff * base[0] / ideal:.3f}", "")]
        figures |= {"litellm_only_makespan_s": round(base[0], 3),
                    "litellm_only_efficiency": round(ideal / base[0], 3),
                    "litellm_cpu_ms_per_call": round(base[1], 3),
                    "relative_to_litellm_only": round(eff * base[0] / ideal, 3)}
    if direct_makespan is not None:
        rows.append(("without litellm's dispatch: efficiency",
                     f"{ideal / direct_makespan:.3f}", "(diagnostic)"))
        figures["efficiency_direct_provider"] = round(ideal / direct_makespan, 3)
        figures["direct_provider_succeeded"] = sum(
            1 for r in direct_res if r.value["text"] == "done" and r.value["steps"] == 2)
    report("concurrency", rows, figures)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="threadlog bench concurrency")
    p.add_argument("--generations", type=int, default=200)
    p.add_argument("--latency", type=float, default=1.0, help="seconds per model call")
    p.add_argument("--workers", type=int, default=0,
                   help="more handler processes in the queue group (default 0: one process)")
    p.add_argument("--direct-provider", action="store_true",
                   help="diagnostic: once more with scripted/ calls skipping litellm's "
                        "dispatch (see the module)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the litellm-only baseline measured first")
    p.add_argument("--serve", metavar="URL", help=argparse.SUPPRESS)
    p.add_argument("--creds", default="", help=argparse.SUPPRESS)
    p.add_argument("--data-dir", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        asyncio.run(serve_worker(args.serve, args.creds, args.latency, args.data_dir))
        return
    asyncio.run(amain(args.generations, args.latency, args.workers, not args.no_baseline,
                      args.direct_provider))


if __name__ == "__main__":
    main(sys.argv[1:])
