"""``threadlog bench canvas``: edits on one canvas, state at an old version, and
reference snippet selection.

- ``--edits N`` (default 100,000) edits appended one after the other on one canvas
  through ``CanvasService`` (decide on the cached state, append with the expected
  version, fold): edits/s. Edits on one canvas are serial by nature (each needs the
  previous version).
- the canvas_state and canvas_edits views catching up with those edits: edits/s.
- the state at version N/2 (nearest in-memory snapshot + after-images), and a cold load
  (the whole canvas folded from the log): ms and edits/s.
- snippet selection (recent K + a selection + BM25 over summaries) on a canvas of 10,000
  edits: p50/p95 ms over 200 prompts; target <= 20 ms p95.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import tempfile
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

from bench._report import now, rate, report
from events import Aggregate, EventStore, EventStreamSpec, ThreadCreated, new_id
from handlers.canvas import CanvasService, SnippetOptions, reference_snippets
from handlers.canvas.commands import CreateCanvas, EditCanvas
from handlers.threads.state import ThreadStateCache
from threadlog.embedded_nats import EmbeddedNats

WORDS = ["revenue", "churn", "roadmap", "hiring", "budget", "launch", "pricing", "retention",
         "onboarding", "growth", "latency", "security", "compliance", "partners", "forecast",
         "margin", "design", "brand", "mobile", "api"]
ELEMENTS = 50


def document() -> dict[str, Any]:
    return {"elements": {f"e{i}": {"type": random.choice(["text", "rect", "image"]),
                                   "x": i * 10, "y": i * 5, "width": 100, "height": 40,
                                   "text": f"{random.choice(WORDS)} {i}"}
                         for i in range(ELEMENTS)}}


def ops_for(i: int, rnd: random.Random) -> list[dict[str, Any]]:
    eid = f"e{rnd.randrange(ELEMENTS)}"
    kind = i % 3
    if kind == 0:
        return [{"op": "replace", "path": f"/elements/{eid}/x", "value": i}]
    if kind == 1:
        return [{"op": "replace", "path": f"/elements/{eid}/width", "value": 100 + i % 50}]
    text = " ".join(rnd.sample(WORDS, 3))
    return [{"op": "replace", "path": f"/elements/{eid}/text", "value": text}]


async def fill(svc: CanvasService, tid: str, edits: int) -> tuple[str, float]:
    cid = "c" + new_id()[:12]
    await svc.create(CreateCanvas(command_id=new_id(), user_id="u1", thread_id=tid,
                                  canvas_id=cid, document=document()))
    rnd = random.Random(7)
    t0 = now()
    for i in range(edits):
        await svc.edit(EditCanvas(command_id=new_id(), user_id="u1", canvas_id=cid,
                                  base_version=i, ops=ops_for(i, rnd)))
    return cid, rate(edits, now() - t0)


async def project(nc: NATS, url: Any, directory: str, edits: int) -> float:
    """Edits/s of the canvas_state + canvas_edits views catching up with the log."""
    from projections.projector import Projector, ProjectorConfig
    from projections.views.canvas import CanvasEditsView, CanvasStateView

    last = (await nc.jetstream().stream_info("BENCH")).state.last_seq
    p = Projector(ProjectorConfig(db_path=Path(directory) / "views.duckdb", stream="BENCH",
                                  views=[CanvasStateView(), CanvasEditsView()]), nc, url)
    await p.open()
    t0 = now()
    task = asyncio.create_task(p.run())
    await p.wait_for(last, timeout=3_600)
    seconds = now() - t0
    p.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)
    await p.close()
    return rate(edits, seconds)


async def amain(edits: int, selection_edits: int) -> None:
    with tempfile.TemporaryDirectory() as d, EmbeddedNats(d) as srv:
        nc = await srv.endpoint.connect()
        store = EventStore(nc, EventStreamSpec(name="BENCH"))
        await store.setup()
        tid = "t" + new_id()[:12]
        await store.append(Aggregate.thread(tid), [ThreadCreated(thread_id=tid, user_id="u1")])
        svc = CanvasService(store, ThreadStateCache(store))
        cid, eps = await fill(svc, tid, edits)
        projected_eps = await project(nc, srv.endpoint, d, edits)

        state = await svc.state_for("u1", cid)
        t0 = now()
        state.document_at(edits // 2)
        old_ms = (now() - t0) * 1000
        svc.canvases.forget(cid)
        t0 = now()
        await svc.state_for("u1", cid)
        load_s = now() - t0

        sel_cid, _ = await fill(svc, tid, selection_edits)
        sel = await svc.state_for("u1", sel_cid)
        rnd = random.Random(11)
        opts = SnippetOptions(recent=5, per_element=3, text_matches=5, token_budget=2_000)
        times = []
        for _ in range(200):
            prompt = "make the " + " ".join(rnd.sample(WORDS, 4)) + " box like before"
            selection = [f"e{rnd.randrange(ELEMENTS)}" for _ in range(2)]
            t0 = now()
            reference_snippets(sel, prompt, selection, opts)
            times.append((now() - t0) * 1000)
        await store.close()
        await nc.close()
    times.sort()
    p50, p95 = statistics.median(times), times[int(len(times) * 0.95) - 1]
    report("canvas", [
        (f"{edits:,} edits on one canvas, edits/s", eps),
        ("projected (canvas_state + canvas_edits), edits/s", projected_eps),
        (f"state at version {edits // 2:,}, ms", old_ms),
        (f"cold load of {edits:,} edits, s", load_s),
        ("cold load, edits/s", rate(edits, load_s)),
        (f"snippet selection, {selection_edits:,} edits, p50 ms", p50),
        (f"snippet selection, {selection_edits:,} edits, p95 ms", p95),
    ], {"edits": edits, "edits_per_s": round(eps),
        "projected_edits_per_s": round(projected_eps), "old_version_ms": round(old_ms, 2),
        "cold_load_s": round(load_s, 2), "selection_edits": selection_edits,
        "selection_p50_ms": round(p50, 3), "selection_p95_ms": round(p95, 3),
        "target_selection_p95_ms": 20, "meets_target": p95 <= 20})


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="threadlog bench canvas")
    p.add_argument("--edits", type=int, default=100_000)
    p.add_argument("--selection-edits", type=int, default=10_000)
    args = p.parse_args(argv)
    asyncio.run(amain(args.edits, args.selection_edits))
