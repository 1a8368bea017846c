"""A handler process for the durable-generation fault-injection tests.

``python -m tests.handlers.agents.gen_fault_worker`` runs ``running(...)`` on the given
NATS server and EVENTS stream (service credentials) with one scripted tool-loop agent
(:func:`agent`), starts the generation ``FI_COMMAND`` in-process on thread ``FI_THREAD`` (created by
the test)
and SIGKILLs itself:

- ``FI_KILL_AT=n``: at the n-th persist point of that generation (0-based; ``before:`` and
  ``after:`` each append: prompt, s1a, s1, s3a, s3, final; ``mid:`` inside each step's
  chain, after its first event), after flushing its connection (what it wrote reached
  the server);
- ``FI_KILL_MODEL=n``: inside its n-th model call (1-based; the call was made, its usage
  not recorded);
- ``FI_KILL_TOOL=n``: inside its n-th tool call (1-based; the side effect happened, its
  result not recorded).

With ``FI_APPROVAL=1`` the agent is :func:`approval_agent`: the generation (command
``FI_COMMAND`` + ``g``) pauses for the approval of its first tool call, the worker
approves it in-process (``decide_approval``, command ``FI_COMMAND``) and the kill points
above are those of the continuation (:data:`APPROVAL_POINTS`); model and tool calls are
counted over the whole generation (the first model call is the one before the pause).

Side effects, in ``FI_DIR``: ``<prompt>.model`` gets a line per model call,
``<thread>.tool`` a line per tool run (with its idempotency key), ``killed-<prompt>``
the time of the kill.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from handlers.agents.definition import Agent
from handlers.llm.call_settings import NO_BACKOFF, CallSettings
from handlers.llm.scripted import Reply, ScriptedRequest, scripted
from handlers.llm.tools import ToolContext, tool

TOOL_STEPS = 2
PERSIST_POINTS = ["before:prompt", "after:prompt",
                  "before:s1a", "mid:s1a", "after:s1a", "before:s1", "mid:s1", "after:s1",
                  "before:s3a", "mid:s3a", "after:s3a", "before:s3", "mid:s3", "after:s3",
                  "before:final", "after:final"]

APPROVAL_POINTS = ["before:decision", "after:decision", "before:prompt", "after:prompt",
                   "before:s1", "mid:s1", "after:s1",
                   "before:s3a", "mid:s3a", "after:s3a", "before:s3", "mid:s3", "after:s3",
                   "before:final", "after:final"]
"""Persist points of an approval continuation (``handlers.agents.approvals``): the
decision (with its pending message), the prompt step replayed, the approved tool's
results (s1), one more tool step (s3a, s3), the final message."""


class Bump(BaseModel):
    n: int


def _die(out: Path, name: str) -> None:
    (out / f"killed-{name}").write_text(f"{time.time()}\n")
    os.kill(os.getpid(), signal.SIGKILL)


def _prompt_of(request: ScriptedRequest) -> str:
    for m in request.messages:
        if m.get("role") == "user":
            c = m.get("content")
            return c if isinstance(c, str) else str((c or [{}])[0].get("text", ""))
    return "unknown"


def agent(name: str, out: Path, *, latency_s: float = 0.0, kill_model: int = 0,
          kill_tool: int = 0) -> Agent:
    """Agent ``name`` (model ``scripted/<name>``): two tool steps (``bump``), then text."""
    calls = {"model": 0, "tool": 0}

    def respond(request: ScriptedRequest) -> Reply:
        prompt = _prompt_of(request)
        with open(out / f"{prompt}.model", "a") as f:
            f.write("call\n")
        calls["model"] += 1
        if calls["model"] == kill_model:
            _die(out, prompt)
        done = sum(1 for m in request.messages if m.get("role") == "tool")
        if done < TOOL_STEPS:
            return Reply.tool_call("bump", {"n": done + 1})
        return Reply.text(f"done after {done} tools")

    @tool
    async def bump(ctx: ToolContext[Any], args: Bump) -> str:
        """Count a side effect."""
        with open(out / f"{ctx.thread_id}.tool", "a") as f:
            f.write(f"{ctx.message_id}:{ctx.tool_call_id}\n")
        calls["tool"] += 1
        if calls["tool"] == kill_tool:
            _die(out, os.environ.get("FI_PROMPT", "unknown"))
        return f"bumped {args.n}"

    scripted.configure(name, latency_s=latency_s, responder=respond)
    return Agent(name=name, model=f"scripted/{name}", tools=[bump], max_steps=5,
                 call_settings=CallSettings(max_retries=0, backoff=NO_BACKOFF))


def approval_agent(name: str, out: Path, *, kill_model: int = 0, kill_tool: int = 0
                   ) -> Agent:
    """Agent ``name``: a tool call that needs approval (``approve_bump``), then one that
    does not (``bump``), then text; every tool run is a line in ``<thread>.tool``."""
    calls = {"model": 0, "tool": 0}

    def respond(request: ScriptedRequest) -> Reply:
        prompt = _prompt_of(request)
        with open(out / f"{prompt}.model", "a") as f:
            f.write("call\n")
        calls["model"] += 1
        if calls["model"] == kill_model:
            _die(out, prompt)
        done = sum(1 for m in request.messages if m.get("role") == "tool")
        if done == 0:
            return Reply.tool_call("approve_bump", {"n": 1})
        if done < TOOL_STEPS:
            return Reply.tool_call("bump", {"n": done + 1})
        return Reply.text(f"done after {done} tools")

    async def count(ctx: ToolContext[Any], n: int) -> str:
        with open(out / f"{ctx.thread_id}.tool", "a") as f:
            f.write(f"{ctx.message_id}:{ctx.tool_call_id}\n")
        calls["tool"] += 1
        if calls["tool"] == kill_tool:
            _die(out, os.environ.get("FI_PROMPT", "unknown"))
        return f"bumped {n}"

    @tool(needs_approval=True)
    async def approve_bump(ctx: ToolContext[Any], args: Bump) -> str:
        """Count a side effect, once a human approved it."""
        return await count(ctx, args.n)

    @tool
    async def bump(ctx: ToolContext[Any], args: Bump) -> str:
        """Count a side effect."""
        return await count(ctx, args.n)

    scripted.configure(name, responder=respond)
    return Agent(name=name, model=f"scripted/{name}", tools=[approve_bump, bump],
                 max_steps=5, call_settings=CallSettings(max_retries=0, backoff=NO_BACKOFF))


async def main() -> None:
    from handlers.agents.durable import GenerationQueueConfig
    from threadlog.runtime import running
    from threadlog.settings import Settings

    env = os.environ
    out = Path(env["FI_DIR"])
    name, prompt, command = env["FI_AGENT"], env["FI_PROMPT"], env["FI_COMMAND"]
    settings = Settings(nats_urls=[env["FI_URL"]], nats_creds=env["FI_CREDS"] or None,
                        data_dir=out / f"data-{name}", events_stream=env["FI_EVENTS"])
    kill_at = int(env.get("FI_KILL_AT", "-1"))
    seen = [0]
    approval = env.get("FI_APPROVAL") == "1"
    a = (approval_agent if approval else agent)(
        name, out, kill_model=int(env.get("FI_KILL_MODEL", "0")),
        kill_tool=int(env.get("FI_KILL_TOOL", "0")))
    async with running(settings, agents=[a], generation_queue=GenerationQueueConfig(
            ack_wait=float(env["FI_ACK_WAIT"]))) as rt:
        async def on_persist(command_id: str, point: str) -> None:
            if command_id != command:
                return
            if seen[0] == kill_at:
                await rt.nc.flush()
                _die(out, prompt)
            seen[0] += 1

        rt.handlers.generator.on_persist = on_persist
        user = env["FI_USER"]
        if approval:
            from handlers.agents.approvals import decide_approval
            from handlers.agents.commands import DecideApproval

            paused = await rt.generate_text(name, user, env["FI_THREAD"], prompt,
                                            command_id=command + "g")
            # in-process: the workers of other scenarios share the command queue group
            await decide_approval(rt.handlers.generator, DecideApproval(
                command_id=command, user_id=user, thread_id=env["FI_THREAD"],
                tool_call_id=paused.awaiting_approval[0], approved=True))
        else:
            await rt.generate_text(name, user, env["FI_THREAD"], prompt, command_id=command)
        (out / f"finished-{prompt}").write_text("unexpected: not killed\n")


if __name__ == "__main__":
    asyncio.run(main())
