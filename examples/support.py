"""The support workflow: create a thread, answer the customer, suggest a structured next
step, and leave a message for the user.

Started on the user's own subject (``cmd.<user>.workflow.start``) by the user's client:
the run acts for that user, so the thread it creates is the user's.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from scheduler.workflows import Step, Workflows
from threadlog import Agent, App, Reply, Settings, running, scripted

USER = "example-customer"
workflows = Workflows()


class Suggestion(BaseModel):
    action: str
    priority: str


@workflows.define("support")
async def support(step: Step, args: Any) -> dict[str, Any]:
    tid = await step.create_thread(title="Support request")
    answer = await step.generate_text("support", tid, prompt=args["question"])
    suggestion = await step.generate_object("triage", tid, prompt="Suggest the next step",
                                            schema=Suggestion.model_json_schema())
    action = Suggestion.model_validate(suggestion["object"])
    await step.save_messages(tid, [{"role": "assistant", "content": (
        f"We will {action.action} (priority {action.priority}).")}])
    return {"thread_id": tid, "answer": answer["text"], "suggestion": action.model_dump()}


app = App(agents=[Agent(name="support", model="scripted/example-support"),
                  Agent(name="triage", model="scripted/example-triage")],
          workflows=workflows)


async def run(settings: Settings) -> dict[str, Any]:
    scripted.script("example-support", [Reply.text("Sorry about the delay: it ships today.")])
    scripted.script("example-triage", [Reply.json({"action": "refund the shipping",
                                                   "priority": "high"})])
    async with running(settings, app=app) as rt:
        client = rt.client(USER)
        started = await client.command("cmd.workflow.start", name="support",
                                       args={"question": "Where is my order?"})
        status = await rt.parts["workflows"].client.wait(started.value["run_id"], timeout=60)
        result: dict[str, Any] = status.result
        return result


def main(settings: Settings | None = None) -> dict[str, Any]:
    return asyncio.run(run(settings or Settings()))


if __name__ == "__main__":
    print(main())
