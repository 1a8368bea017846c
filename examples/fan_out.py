"""Fan-out: several LLM calls in parallel (one thread each), then a combining step.

``asyncio.gather`` over steps numbers them in call order, so a replay after a crash
returns the finished calls from the journal and runs only the missing ones.
"""

from __future__ import annotations

import asyncio
from typing import Any

from scheduler.workflows import IdempotencyKey, Step, Workflows
from threadlog import Agent, App, Settings, running

USER = "example-writer"
workflows = Workflows()


def combine(texts: list[str], key: IdempotencyKey) -> str:
    return "\n".join(f"- {t}" for t in texts)


@workflows.define("fan_out")
async def fan_out(step: Step, args: Any) -> dict[str, Any]:
    topics: list[str] = args["topics"]
    threads = await asyncio.gather(*(step.create_thread(title=t) for t in topics))
    answers = await asyncio.gather(*(
        step.generate_text("writer", tid, prompt=f"One line about {topic}")
        for tid, topic in zip(threads, topics, strict=True)))
    summary = await step.run(combine, [a["text"] for a in answers])
    return {"threads": list(threads), "summary": summary}


app = App(agents=[Agent(name="writer", model="scripted/example-fanout")],
          workflows=workflows)


async def run(settings: Settings) -> dict[str, Any]:
    async with running(settings, app=app) as rt:
        wf = rt.parts["workflows"].client
        run_id = await wf.start("fan_out", {"topics": ["rivers", "mountains", "cities"]},
                                user_id=USER)
        result: dict[str, Any] = (await wf.wait(run_id, timeout=60)).result
        return result


def main(settings: Settings | None = None) -> dict[str, Any]:
    return asyncio.run(run(settings or Settings()))


if __name__ == "__main__":
    print(main()["summary"])
