"""A handler process for the call-level and thread-level tool takeover tests.

``python -m tests.handlers.agents.call_tools_worker`` runs ``running(...)`` on the given
NATS server and EVENTS stream with the agent of :mod:`.call_tools_lib` and, by
``FI_MODE``:

- ``call``: ``rt.generate_text(..., tools=[cbump])`` (a module-level tool);
- ``thread``: ``rt.configure_thread(thread, ThreadOptions(tools=[cbump]))``, then
  ``rt.generate_text`` without tools;
- ``closure``: ``tools=[closure_cbump()]`` (no import reference);
- ``ext``: ``tools=[<FI_EXT_MODULE>.ext_bump]`` (a module only this process's
  ``PYTHONPATH`` has);
- ``serve``: no generation: a worker of the queue only, until it is killed.

It SIGKILLs itself at the persist point named ``FI_KILL_POINT`` (e.g. ``after:s1a``: the
first tool call recorded, the tool not run), inside its ``FI_KILL_MODEL``-th model call,
or inside its ``FI_KILL_TOOL``-th tool run (``call_tools_lib``). ``serve`` writes
``serving-<agent>`` in ``FI_DIR`` once its worker runs.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from tests.handlers.agents.call_tools_lib import agent, cbump, closure_cbump, die


async def main() -> None:
    from handlers.agents.durable import GenerationQueueConfig
    from handlers.agents.generation import ThreadOptions
    from threadlog.runtime import running
    from threadlog.settings import Settings

    env = os.environ
    out = Path(env["FI_DIR"])
    name, prompt, command, mode = env["FI_AGENT"], env["FI_PROMPT"], env["FI_COMMAND"], \
        env["FI_MODE"]
    settings = Settings(nats_urls=[env["FI_URL"]], nats_creds=env["FI_CREDS"] or None,
                        data_dir=out / f"data-{prompt}-{mode}", events_stream=env["FI_EVENTS"])
    kill_point = env.get("FI_KILL_POINT", "")
    a = agent(name, out, kill_model=int(env.get("FI_KILL_MODEL", "0")))
    async with running(settings, agents=[a], generation_queue=GenerationQueueConfig(
            ack_wait=float(env["FI_ACK_WAIT"]))) as rt:
        if mode == "serve":
            (out / f"serving-{name}").write_text("1\n")
            await asyncio.Event().wait()

        async def on_persist(command_id: str, point: str) -> None:
            if command_id == command and point == kill_point:
                await rt.nc.flush()
                die(out, prompt)

        rt.handlers.generator.on_persist = on_persist
        tools: list[Any] | None = None
        if mode == "call":
            tools = [cbump]
        elif mode == "thread":
            rt.configure_thread(env["FI_THREAD"], ThreadOptions(tools=[cbump]))
        elif mode == "closure":
            tools = [closure_cbump()]
        elif mode == "ext":
            tools = [importlib.import_module(env["FI_EXT_MODULE"]).ext_bump]
        await rt.generate_text(name, env["FI_USER"], env["FI_THREAD"], prompt,
                               command_id=command, tools=tools)
        (out / f"finished-{prompt}").write_text("unexpected: not killed\n")


if __name__ == "__main__":
    asyncio.run(main())
