"""A human approval awaited as a durable event, with a timeout.

The workflow drafts a reply, then waits for an ``approval`` event (sent by the user on
``cmd.<user>.workflow.send_event``) for at most ``timeout`` seconds. The wait is an event
plus a redelivery at the due time: nothing waits in memory, a restart keeps it. Approved
drafts are saved to the thread; an expired wait ends the run as ``timed_out``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from scheduler.workflows import EventTimeout, Step, Workflows
from threadlog import Agent, App, Settings, running

USER = "example-approver"
workflows = Workflows()


@workflows.define("approve_reply")
async def approve_reply(step: Step, args: Any) -> dict[str, Any]:
    tid = await step.create_thread(title="Needs approval")
    draft = await step.generate_text("drafter", tid, prompt=args["request"])
    try:
        decision = await step.await_event("approval", timeout=args["timeout"])
    except EventTimeout:
        return {"status": "timed_out", "draft": draft["text"]}
    if not decision.get("approved"):
        return {"status": "rejected", "draft": draft["text"]}
    await step.save_messages(tid, [{"role": "assistant", "content": draft["text"]}])
    return {"status": "sent", "draft": draft["text"], "thread_id": tid}


# The scripted model's default answer echoes the prompt ("You said: ..."): deterministic
# per run, whichever of the two runs below calls it first.
app = App(agents=[Agent(name="drafter", model="scripted/example-drafter")],
          workflows=workflows)


async def run(settings: Settings) -> dict[str, Any]:
    async with running(settings, app=app) as rt:
        client, wf = rt.client(USER), rt.parts["workflows"].client
        approved = (await client.command("cmd.workflow.start", name="approve_reply", args={
            "request": "Write to the customer about the refund", "timeout": 30.0})
            ).value["run_id"]
        await client.command("cmd.workflow.send_event", run_id=approved, name="approval",
                             value={"approved": True})
        unanswered = (await client.command("cmd.workflow.start", name="approve_reply", args={
            "request": "Write to the customer about the delay", "timeout": 0.5})
            ).value["run_id"]
        return {"approved": (await wf.wait(approved, timeout=60)).result,
                "unanswered": (await wf.wait(unanswered, timeout=60)).result}


def main(settings: Settings | None = None) -> dict[str, Any]:
    return asyncio.run(run(settings or Settings()))


if __name__ == "__main__":
    print(main())
