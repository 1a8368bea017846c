"""A handler process that takes a generation slot and holds it until SIGKILLed.

``python -m tests.handlers.generation_limits.slot_holder_worker`` runs ``running(...)``
on ``GL_URL`` (service credentials ``GL_CREDS``) and the EVENTS stream ``GL_EVENTS`` with
the generation limit on (``GL_LIMIT``; slots and queue ``ack_wait`` = ``GL_ACK_WAIT``),
starts the generation ``GL_COMMAND`` of agent ``GL_AGENT`` on thread ``GL_THREAD`` (user
``GL_USER``) whose model call never returns (an hour's latency), prints ``holding`` once
that call started (it holds the slot) and waits to be killed.
"""

from __future__ import annotations

import asyncio
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from handlers.agents.definition import Agent
from handlers.agents.durable import GenerationQueueConfig
from handlers.generation_limits import SlotsConfig
from handlers.llm.call_settings import NO_BACKOFF, CallSettings
from handlers.llm.scripted import scripted
from threadlog.runtime import running
from threadlog.settings import Settings


async def main() -> None:
    env = os.environ
    name = env["GL_AGENT"]
    scripted.configure(name, latency_s=3600.0)
    agent = Agent(name=name, model=f"scripted/{name}",
                  call_settings=CallSettings(max_retries=0, backoff=NO_BACKOFF, timeout=7200))
    ack_wait = float(env["GL_ACK_WAIT"])
    settings = Settings(nats_urls=[env["GL_URL"]], nats_creds=env["GL_CREDS"] or None,
                        data_dir=env["GL_DIR"], events_stream=env["GL_EVENTS"],
                        generation_parallelism=int(env["GL_LIMIT"]))
    async with running(settings, agents=[agent],
                       generation_queue=GenerationQueueConfig(ack_wait=ack_wait),
                       generation_slots=SlotsConfig(ack_wait=ack_wait,
                                                    fetch_timeout=0.5)) as rt:
        inner = rt.handlers.generator.call_step

        async def call_step(*args: object, **kwargs: object) -> object:
            print("holding", flush=True)
            return await inner(*args, **kwargs)  # type: ignore[arg-type]

        rt.handlers.generator.call_step = call_step  # type: ignore[assignment]
        await rt.generate_text(name, env["GL_USER"], env["GL_THREAD"], "hold it",
                               command_id=env["GL_COMMAND"])


if __name__ == "__main__":
    asyncio.run(main())
