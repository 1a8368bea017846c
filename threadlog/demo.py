"""``threadlog demo``: the product in under a minute on embedded defaults, then a clean stop.

Starts an embedded nats-server (auth on) with the handlers, projector, live relay and
workflows in this process, connects as a user and as an operator with credentials of
their own, and shows, each beside a live tail of the events the user's connection
receives as they are appended: a streamed answer, a tool call, a structured object
whose values come from the prompt, a canvas edit whose snippet a later edit draws on,
a durable workflow whose worker process is SIGKILLed mid-step and taken over, usage
and cost per model call, then SQL over the views of this run only. Model text is
printed verbatim (never read as markup); a model error is one line, not a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from events import ThreadlogError
from handlers.agents.definition import Agent
from handlers.canvas import canvas_tools
from handlers.canvas import subjects as canvas_subjects
from handlers.client import Client
from handlers.llm.scripted import Reply, scripted
from handlers.llm.tools import ToolContext, tool
from handlers.llm.usage_and_cost import ModelPrice
from threadlog.demo_tail import EventTail
from threadlog.runtime import Runtime, running
from threadlog.serve import default_parts
from threadlog.settings import Settings

USER = "demo-user"
DEMO_PRICE = ModelPrice(input=0.15e-6, output=0.60e-6)
"""What the offline model is billed at in the demo (USD per token: $0.15 and $0.60 per
million), so the usage rows show a cost."""


class CityArgs(BaseModel):
    city: str = Field(description="The city to get the weather for")


@tool
async def get_weather(ctx: ToolContext[Any], args: CityArgs) -> dict[str, Any]:
    """Get the current weather in a city."""
    return {"city": args.city, "forecast": "sunny", "temperature_c": 21}


class TripPlan(BaseModel):
    city: str
    days: int = Field(ge=1)
    activities: list[str]


def _script(model: str) -> None:
    """What the offline model answers, in order (a real model is asked the same)."""
    scripted.script(model, [
        Reply.text("threadlog keeps every message as an immutable event on NATS JetStream "
                   "and rebuilds [views] in DuckDB from that log."),
        Reply.tool_call("get_weather", {"city": "Lisbon"}),
        Reply.text("It is sunny in Lisbon, 21 °C: a fine day for a walk."),
        Reply.json({"city": "Lisbon", "days": 3,
                    "activities": ["Alfama by tram 28", "Belém and its tower",
                                   "Sintra day trip"]}),
    ])


def _script_canvas(model: str, canvas_id: str) -> None:
    """The offline model's canvas edit (it needs the id of the canvas the demo made)."""
    scripted.script(model, [
        Reply.tool_call("edit_canvas", {
            "canvas_id": canvas_id, "base_version": 1,
            "ops": [{"op": "replace", "path": "/elements/title/text",
                     "value": "Lisbon in 3 days (sunny)"}],
            "summary": "title names the weather"}),
        Reply.text("Done: the title now says it will be sunny."),
    ])


async def run_demo(settings: Settings, console: Console) -> None:
    offline = settings.model.startswith("scripted/")
    if offline:
        _script(settings.model)
    agent = Agent(name="assistant", model=settings.model,
                  tools=[get_weather, *canvas_tools(revert=False)],
                  instructions="You are a concise assistant.")
    prices = {settings.model: DEMO_PRICE} if offline else None
    started = time.monotonic()
    async with running(settings, agents=[agent], extra_parts=default_parts(),
                       prices=prices) as rt:
        where = "embedded nats-server (auth on)" if rt.embedded else "NATS"
        console.print(f"[bold]threadlog demo[/] on {where} {rt.urls[0]}, "
                      f"model {settings.model}")
        client, operator = await demo_clients(rt, settings)
        console.print(f"connected as [cyan]{USER}[/] (user credentials: it may only act as "
                      "itself) and as an operator")
        tail = await EventTail.start(client, console)
        created = await client.create_thread(title="Demo thread")
        tid = created.value["thread_id"]
        await tail.caught_up(created.seq or 0)
        threads = [tid]
        last_seq = 0

        async def section(title: str, body: Callable[[], Awaitable[int | None]]) -> None:
            nonlocal last_seq
            console.rule(title)
            try:
                seq = await body()
            except ThreadlogError as exc:
                console.print(Text(f"failed: {exc.code}: {exc}", style="red"))
                seq = None
            except ValidationError as exc:  # a model's object that does not fit
                console.print(Text(f"failed: the model's answer does not fit: "
                                   f"{exc.error_count()} errors, first: "
                                   f"{exc.errors()[0]['msg']}", style="red"))
                seq = None
            last_seq = max(last_seq, seq or 0)
            if seq:
                await tail.caught_up(seq)

        async def streamed() -> int | None:
            console.print(Text("you: What is threadlog?", style="bold"))
            stream = client.stream_text("assistant", tid, "What is threadlog?")
            console.print(Text("assistant: ", style="bold"), end="")
            tail.hold()
            try:
                async for delta in stream:
                    console.print(Text(delta), end="")  # verbatim: no markup
                console.print()
            finally:
                tail.release()
            return stream.result.seq if stream.result is not None else None

        async def tool_call() -> int | None:
            console.print(Text("you: What's the weather in Lisbon?", style="bold"))
            res = await client.generate_text("assistant", tid, "What's the weather in Lisbon?")
            console.print(Text(f"assistant: {res.value['text']}"),
                          Text(f"({res.value['steps']} steps)", style="dim"))
            return res.seq

        async def structured() -> int | None:
            prompt = "Plan a 3-day trip to Lisbon"
            console.print(Text(f"you: {prompt}", style="bold"))
            obj = await client.generate_object("assistant", tid, prompt,
                                               TripPlan.model_json_schema())
            plan = TripPlan.model_validate(obj.value["object"])
            console.print(Text(f"TripPlan(city={plan.city!r}, days={plan.days}, "
                               f"activities={plan.activities})"))
            return obj.seq

        await section("1. a streamed answer", streamed)
        await section("2. a tool call", tool_call)
        await section("3. a structured object", structured)
        await section("4. a canvas edit, and a later edit that draws on its snippet",
                      lambda: canvas_section(client, tid, settings.model, console, offline))
        await section("5. a durable workflow: its worker is SIGKILLed mid-step",
                      lambda: workflow_section(rt, settings, console))
        await tail.stop()
        console.rule("6. usage and cost per model call (this run)")
        await show_sql(operator, console, last_seq, threads)
        await client.close()
        await operator.close()
    console.print(f"[green]done[/] in {time.monotonic() - started:.1f} s: everything "
                  "stopped cleanly. Browse it: [bold]threadlog playground[/] "
                  f"--data-dir {settings.data_dir}")


async def canvas_section(client: Client, tid: str, model: str, console: Console,
                         offline: bool) -> int | None:
    created = await client.command(canvas_subjects.CREATE,
                                   thread_id=tid, title="Trip plan",
                                   document={"elements": {"title": {
                                       "type": "text", "text": "Lisbon in 3 days",
                                       "x": 0, "y": 0, "width": 300, "height": 40}}})
    cid = created.value["canvas_id"]
    edit = await client.command(canvas_subjects.EDIT, canvas_id=cid,
                                base_version=0, summary="bigger title",
                                ops=[{"op": "replace", "path": "/elements/title/width",
                                      "value": 480}])
    console.print(Text(f"you edited canvas {cid}: version {edit.value['version']}, "
                       "'bigger title'"))
    if offline:
        _script_canvas(model, cid)
    res = await client.generate_text("assistant", tid, "Say on the plan that it will be sunny",
                                     canvas_selection=["title"])
    seen = _canvas_context_seen(model) if offline else None
    if seen:
        console.print(Text("the model's context carried the earlier edit as a snippet:",
                           style="dim"))
        console.print(Text("  " + seen))
    history = await client.query(canvas_subjects.HISTORY, canvas_id=cid, limit=5)
    for e in history.value["edits"]:
        console.print(Text(f"  v{e['version']} by {e['author_kind']}: {e['summary']}"))
    console.print(Text(f"assistant: {res.value['text']}"))
    seq: int | None = history.seq or res.seq
    return seq


def _canvas_context_seen(model: str) -> str | None:
    """The reference-edits line of the last request the scripted model received."""
    for req in reversed(scripted.requests(model)):
        for m in req.messages:
            content = m.get("content")
            if isinstance(content, str) and "Reference edits" in content:
                lines = [ln for ln in content.splitlines() if ln.strip().startswith("v")
                         or "bigger title" in ln]
                line = lines[0] if lines else content.splitlines()[0]
                return line.split(" {", 1)[0][:160]
    return None


async def workflow_section(rt: Runtime, settings: Settings, console: Console) -> int | None:
    """Start ``demo_report`` on a worker process, SIGKILL it while step 2 runs, start a
    new worker, and show the run finish with each completed step run once."""
    from threadlog import demo_worker

    wf = rt.parts["workflows"].client
    runs_file = settings.data_dir / "demo-step-runs.txt"
    runs_file.unlink(missing_ok=True)
    creds = rt.endpoint.creds if rt.endpoint is not None else None
    argv = [sys.executable, "-m", "threadlog.demo_worker", rt.urls[0], str(creds or ""),
            settings.events_stream, str(runs_file)]
    worker = await _start_worker(argv)
    try:
        run_id = await wf.start(demo_worker.WORKFLOW, {}, user_id=USER)
        console.print(Text(f"run {run_id} started on worker pid {worker.pid}"))
        await asyncio.wait_for(asyncio.to_thread(_read_until, worker, "ran write_report"),
                               timeout=20)
        worker.kill()
        worker.wait()
        killed = time.monotonic()
        console.print(Text(f"worker pid {worker.pid} SIGKILLed while step 2 "
                           "(write_report) ran", style="red"))
        worker = await _start_worker(argv)
        console.print(Text(f"new worker pid {worker.pid}; the run is redelivered "
                           f"{demo_worker.ACK_WAIT_S} s after the last heartbeat"))
        status = await wf.wait(run_id, timeout=30)
        console.print(Text(f"run {status.state} {time.monotonic() - killed:.1f} s after "
                           f"the kill: {status.result}"))
        counts: dict[str, int] = {}
        for line in runs_file.read_text().split():
            counts[line] = counts.get(line, 0) + 1
        table = Table("step", "name", "status", "function ran")
        for s in await wf.list_steps(run_id):
            table.add_row(str(s.step_no), s.name, s.status, f"{counts.get(s.name, 0)}x")
        console.print(table)
        console.print(Text("a completed step never runs again; the one in flight at the "
                           "kill ran again (at least once)", style="dim"))
        seq: int = status.version_seq
        return seq
    finally:
        worker.kill()
        worker.wait()


async def _start_worker(argv: list[str]) -> subprocess.Popen[str]:
    """The demo's worker process, once it says it is ready (read in a thread: this
    process's handlers keep serving meanwhile; bounded)."""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    try:
        await asyncio.wait_for(asyncio.to_thread(_read_until, proc, "ready"), timeout=60)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


def _read_until(proc: subprocess.Popen[str], line: str) -> None:
    """Read the worker's output until ``line`` (it prints one line per step it runs)."""
    assert proc.stdout is not None
    for got in proc.stdout:
        if got.strip() == line:
            return
    raise ThreadlogError(f"the demo worker exited before {line!r}", code="unavailable")


async def demo_clients(rt: Any, settings: Settings) -> tuple[Client, Client]:
    """A user's and an operator's connection, each with credentials of its own (on a
    deployment, issue them with ``threadlog credentials issue``)."""
    if rt.embedded is None:
        return (Client(rt.nc, user_id=USER), Client(rt.nc, user_id="demo-operator"))
    creds = settings.data_dir / "creds"
    user = await Client.connect(rt.embedded.endpoint_for("user", USER,
                                                         creds / f"{USER}.creds"))
    operator = await Client.connect(rt.embedded.endpoint_for("operator", "demo-operator",
                                                             creds / "demo-operator.creds"),
                                    user_id="demo-operator")
    return user, operator


async def show_sql(operator: Client, console: Console, min_seq: int,
                   threads: list[str]) -> None:
    """Usage rows per model call, then messages per role, of this run's threads only."""
    ids = ", ".join(f"'{t}'" for t in threads)
    queries = [
        ("SELECT agent_name, model, prompt_tokens, completion_tokens, "
         "round(cost, 8) AS cost_usd FROM usage "
         f"WHERE thread_id IN ({ids}) ORDER BY seq"),
        ("SELECT role, status, count(*) AS messages, sum(total_tokens) AS tokens "
         f"FROM messages WHERE thread_id IN ({ids}) GROUP BY ALL ORDER BY ALL"),
    ]
    for sql in queries:
        console.print(Text(sql, style="dim"))
        try:
            res = await operator.query("ops.sql", sql=sql, min_seq=min_seq)
        except ThreadlogError as exc:
            console.print(Text(f"SQL not available: {exc.code}: {exc}", style="yellow"))
            return
        value = res.value
        table = Table(*value["columns"])
        for row in value["rows"]:
            table.add_row(*[Text(json.dumps(v) if isinstance(v, (dict, list)) else str(v))
                            for v in row])
        console.print(table)
