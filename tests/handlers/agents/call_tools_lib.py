"""Module-level tools (with import references) and the scripted agent of the call-level
and thread-level tool takeover tests (``test_durable_call_tools``).

The agent (:func:`agent`) has no tools of its own: its model asks for ``cbump`` twice,
then answers ``done: <the tool results>``. ``cbump`` is given per call or per thread
(:data:`cbump`, importable as ``tests.handlers.agents.call_tools_lib:cbump``) or as a
closure (:func:`closure_cbump`, no reference). Every tool run is a line in
``$FI_DIR/<thread>.tool``; every model call one in ``$FI_DIR/<prompt>.model``. With
``FI_KILL_TOOL=n`` (the killed worker's environment) the n-th tool run SIGKILLs the
process after its side effect.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from handlers.agents.definition import Agent
from handlers.llm.call_settings import NO_BACKOFF, CallSettings
from handlers.llm.scripted import Reply, ScriptedRequest, scripted
from handlers.llm.tools import Tool, ToolContext, tool

TOOL_STEPS = 2
_runs = [0]


class Bump(BaseModel):
    n: int


def die(out: Path, name: str) -> None:
    (out / f"killed-{name}").write_text(f"{time.time()}\n")
    os.kill(os.getpid(), signal.SIGKILL)


def count_run(ctx: ToolContext[Any], args: Bump) -> str:
    """The side effect of every ``cbump``: a line per run (idempotency key included)."""
    out = Path(os.environ["FI_DIR"])
    with open(out / f"{ctx.thread_id}.tool", "a") as f:
        f.write(f"{ctx.message_id}:{ctx.tool_call_id}\n")
    _runs[0] += 1
    if _runs[0] == int(os.environ.get("FI_KILL_TOOL", "0")):
        die(out, os.environ.get("FI_PROMPT", "unknown"))
    return f"cbumped {args.n}"


@tool
async def cbump(ctx: ToolContext[Any], args: Bump) -> str:
    """Count a side effect."""
    return count_run(ctx, args)


def closure_cbump() -> Tool[Any]:
    """``cbump`` made in a function: no import reference (process-bound)."""
    @tool(name="cbump")
    async def local_bump(ctx: ToolContext[Any], args: Bump) -> str:
        """Count a side effect."""
        return count_run(ctx, args)

    return local_bump


def prompt_of(request: ScriptedRequest) -> str:
    for m in request.messages:
        if m.get("role") == "user":
            c = m.get("content")
            return c if isinstance(c, str) else str((c or [{}])[0].get("text", ""))
    return "unknown"


def expected_text() -> str:
    return "done: " + ", ".join(f"cbumped {n}" for n in range(1, TOOL_STEPS + 1))


def agent(name: str, out: Path, *, kill_model: int = 0) -> Agent:
    """Agent ``name`` (model ``scripted/<name>``, no tools of its own): ``cbump`` twice,
    then ``done: <results>``; the ``kill_model``-th model call SIGKILLs the process."""
    calls = [0]

    def respond(request: ScriptedRequest) -> Reply:
        prompt = prompt_of(request)
        with open(out / f"{prompt}.model", "a") as f:
            f.write("call\n")
        calls[0] += 1
        if calls[0] == kill_model:
            die(out, prompt)
        results = [str(m.get("content")) for m in request.messages if m.get("role") == "tool"]
        if len(results) < TOOL_STEPS:
            return Reply.tool_call("cbump", {"n": len(results) + 1})
        return Reply.text("done: " + ", ".join(results))

    scripted.configure(name, responder=respond)
    return Agent(name=name, model=f"scripted/{name}", max_steps=5,
                 call_settings=CallSettings(max_retries=0, backoff=NO_BACKOFF))
