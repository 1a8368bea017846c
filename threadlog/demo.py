"""``threadlog demo``: the whole loop on embedded defaults, then a clean stop.

Starts an embedded nats-server, the handlers (and the projector when available) in this
process; creates a thread; streams an answer live; runs a tool call; generates a
structured object; lists the thread's messages; runs a SQL query over the projections.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from handlers.agents.definition import Agent
from handlers.client import Client
from handlers.llm.scripted import Reply, scripted
from handlers.llm.tools import ToolContext, tool
from threadlog.runtime import running
from threadlog.serve import default_parts
from threadlog.settings import Settings


class CityArgs(BaseModel):
    city: str = Field(description="The city to get the weather for")


@tool
async def get_weather(ctx: ToolContext[Any], args: CityArgs) -> dict[str, Any]:
    """Get the current weather in a city."""
    return {"city": args.city, "forecast": "sunny", "temperature_c": 21}


class TripPlan(BaseModel):
    city: str
    days: int
    activities: list[str]


async def run_demo(settings: Settings, console: Console) -> None:
    offline = settings.model.startswith("scripted/")
    if offline:
        name = settings.model.split("/", 1)[1]
        scripted.script(name, [
            Reply.text("threadlog keeps every message as an immutable event on NATS "
                       "JetStream, and rebuilds views in DuckDB from that log."),
            Reply.tool_call("get_weather", {"city": "Lisbon"}),
            Reply.text("It is sunny in Lisbon, 21 °C: a fine day for a walk."),
        ])
    agent = Agent(name="assistant", model=settings.model, tools=[get_weather],
                  instructions="You are a concise assistant.")
    async with running(settings, agents=[agent], extra_parts=default_parts()) as rt:
        where = "embedded nats-server" if rt.embedded else "NATS"
        console.print(f"[bold]threadlog demo[/] on {where} {rt.urls[0]}, model {settings.model}")
        client, operator = await demo_clients(rt, settings)
        console.print("connected as [cyan]demo-user[/] (user credentials) and an operator")
        tid = (await client.create_thread(title="Demo thread")).value["thread_id"]
        console.print(f"thread [cyan]{tid}[/] created")

        console.rule("1. streamed answer")
        stream = client.stream_text("assistant", tid, "What is threadlog?")
        async for delta in stream:
            console.print(delta, end="", highlight=False)
        console.print()

        console.rule("2. a tool call")
        res = await client.generate_text("assistant", tid, "What's the weather in Lisbon?")
        console.print(f"{res.value['text']}  [dim]({res.value['steps']} steps)[/]")

        console.rule("3. a structured object")
        obj = await client.generate_object("assistant", tid, "Plan a 3-day trip to Lisbon",
                                           TripPlan.model_json_schema())
        plan = TripPlan.model_validate(obj.value["object"])
        console.print(plan)

        console.rule("4. the thread's messages (query.messages.list)")
        listed = await client.query("query.messages.list", thread_id=tid, limit=50,
                                    min_seq=obj.seq)
        table = Table("order", "step", "role", "status", "text")
        for m in reversed(listed.value["items"]):
            table.add_row(str(m["order"]), str(m["step_order"]), m["role"], m["status"],
                          escape((m["text"] or ("[tool]" if m["is_tool"] else ""))[:70]))
        console.print(table)

        console.rule("5. SQL over the projections (operator credentials)")
        await show_sql(operator, console, obj.seq or 0)
        await client.close()
        await operator.close()
    console.print("[green]done[/]: everything stopped cleanly")


async def demo_clients(rt: Any, settings: Settings) -> tuple[Client, Client]:
    """A user's and an operator's connection, each with credentials of its own (on a
    deployment, issue them with ``threadlog credentials issue``)."""
    if rt.embedded is None:
        return (Client(rt.nc, user_id="demo-user"), Client(rt.nc, user_id="demo-operator"))
    creds = settings.data_dir / "creds"
    user = await Client.connect(rt.embedded.endpoint_for("user", "demo-user",
                                                         creds / "demo-user.creds"))
    operator = await Client.connect(rt.embedded.endpoint_for("operator", "demo-operator",
                                                             creds / "demo-operator.creds"),
                                    user_id="demo-operator")
    return user, operator


async def show_sql(operator: Client, console: Console, min_seq: int) -> None:
    sql = ("SELECT role, count(*) AS messages, sum(total_tokens) AS tokens "
           "FROM messages GROUP BY role ORDER BY role")
    try:
        res = await operator.query("ops.sql", sql=sql, min_seq=min_seq)
    except Exception as exc:
        console.print(f"[yellow]SQL not available:[/] {exc}")
        return
    value = res.value
    table = Table(*value["columns"])
    for row in value["rows"]:
        table.add_row(*[str(v) for v in row])
    console.print(table)
