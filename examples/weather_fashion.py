"""Weather, then fashion advice, chained on one thread.

A workflow creates a thread, asks the ``weather`` agent (which calls its
``get_weather`` tool), then asks the ``fashion`` agent on the same thread: the second
generation sees the first answer in its context. Each step is journaled, so a crash
between them resumes at the fashion step without asking for the weather again.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from scheduler.workflows import Step, Workflows
from threadlog import Agent, App, Reply, Settings, ToolContext, running, scripted, tool

USER = "example-user"
workflows = Workflows()


class CityArgs(BaseModel):
    city: str


@tool
async def get_weather(ctx: ToolContext[Any], args: CityArgs) -> dict[str, Any]:
    """Get the weather in a city."""
    return {"city": args.city, "sky": "sunny", "temperature_c": 24}


@workflows.define("weather_then_fashion")
async def weather_then_fashion(step: Step, args: Any) -> dict[str, Any]:
    tid = await step.create_thread(title=f"Outfit for {args['city']}")
    weather = await step.generate_text("weather", tid,
                                       prompt=f"What is the weather in {args['city']}?")
    advice = await step.generate_text("fashion", tid, prompt="What should I wear today?")
    return {"thread_id": tid, "weather": weather["text"], "advice": advice["text"]}


app = App(agents=[
    Agent(name="weather", model="scripted/example-weather", tools=[get_weather]),
    Agent(name="fashion", model="scripted/example-fashion",
          instructions="Advise on clothes for the weather in the conversation."),
], workflows=workflows)


async def run(settings: Settings) -> dict[str, Any]:
    scripted.script("example-weather", [Reply.tool_call("get_weather", {"city": "Lisbon"}),
                                        Reply.text("Sunny in Lisbon, 24 °C.")])
    scripted.script("example-fashion", [Reply.text("A linen shirt, shorts and sunglasses.")])
    async with running(settings, app=app) as rt:
        wf = rt.parts["workflows"].client
        run_id = await wf.start("weather_then_fashion", {"city": "Lisbon"}, user_id=USER)
        status = await wf.wait(run_id, timeout=60)
        result: dict[str, Any] = status.result
        return result


def main(settings: Settings | None = None) -> dict[str, Any]:
    return asyncio.run(run(settings or Settings()))


if __name__ == "__main__":
    print(main())
