"""``threadlog playground``: the web playground on a deployment or on embedded defaults.

With ``--nats-url`` the page connects to that deployment with ``--creds`` (an operator's
credential browses every user; a user's sees and acts only as that user: the NATS server
enforces it). Without it, the deployment runs in this process on embedded defaults (like
``threadlog demo``: an embedded nats-server with auth, the offline scripted model, a demo
agent ``assistant`` with a weather tool, a tool that needs approval and canvas tools),
and the page connects with a credential it issues for ``--role`` (``user``: as
``--user``, can send prompts; ``operator``: every user, read-only).

Failure modes: a bad option or an unreachable server prints one line and exits 2; a
port in use is uvicorn's error (exit 1).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel, Field
from rich.console import Console

from events import ThreadlogError
from events.connection import NatsEndpoint
from handlers.agents.definition import Agent
from handlers.llm.tools import ToolContext, tool
from threadlog.cli_options import CredsOpt
from threadlog.settings import Settings, load_settings

console = Console()
DEMO_AGENT = "assistant"


class CityArgs(BaseModel):
    city: str = Field(description="The city")


class BookingArgs(BaseModel):
    restaurant: str = Field(description="The restaurant")
    people: int = Field(2, description="How many people")


@tool
async def get_weather(ctx: ToolContext[Any], args: CityArgs) -> dict[str, Any]:
    """Get the current weather in a city."""
    return {"city": args.city, "forecast": "sunny", "temperature_c": 21}


@tool(needs_approval=True)
async def book_table(ctx: ToolContext[Any], args: BookingArgs) -> dict[str, Any]:
    """Book a table at a restaurant (a human approves it first)."""
    return {"booked": args.restaurant, "people": args.people}


def demo_agent(model: str) -> Agent:
    """The agent the embedded playground offers (the scripted model calls a tool the
    prompt names, e.g. "get_weather in Lisbon" or "book_table")."""
    from handlers.canvas.tools import canvas_tools

    return Agent(name=DEMO_AGENT, model=model, instructions="You are a concise assistant.",
                 tools=[get_weather, book_table, *canvas_tools()])


async def serve_page(app: Any, host: str, port: int, url_note: str) -> None:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           timeout_graceful_shutdown=2))
    console.print(f"[green]threadlog playground[/] on http://{host}:{port}/ ({url_note}); "
                  "Ctrl-C to stop")
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/] the page is reachable from the network on {host}; "
                      "anyone who can reach it acts with this playground's NATS credential")
    # uvicorn re-raises the signal that stopped it once it has shut down, to run the
    # handler that was in place before: with Python's default SIGTERM handler that kills
    # the process before the embedded nats-server and the handlers are stopped. So the
    # handler in place is ours: it only notes the signal, and the caller's cleanup runs.
    previous = {sig: signal.signal(sig, _noted) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        await server.serve()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _noted(signum: int, frame: Any) -> None:
    """A stop signal re-raised by uvicorn after its shutdown: nothing more to do."""


async def run_remote(endpoint: NatsEndpoint, host: str, port: int, agents: list[str],
                     user: str | None) -> None:
    from threadlog.playground import Bridge, create_app

    await endpoint.probe()
    bridge = await Bridge(endpoint).start()
    try:
        app = create_app(bridge, agents=agents, default_user=user, allowed_hosts=[host])
        await serve_page(app, host, port, f"{bridge.identity.role} "
                         f"{bridge.identity.name!r} on {endpoint.url}")
    finally:
        await bridge.close()


async def run_embedded(settings: Settings, host: str, port: int, role: str, user: str) -> None:
    from threadlog.playground import create_app
    from threadlog.runtime import running
    from threadlog.serve import default_parts

    async with running(settings, agents=[demo_agent(settings.model)],
                       extra_parts=default_parts()) as rt:
        assert rt.embedded is not None
        creds = settings.data_dir / "creds" / f"playground-{role}-{user}.creds"
        endpoint = rt.embedded.endpoint_for(role, user, creds)
        app = create_app(endpoint, agents=[DEMO_AGENT],
                         default_user=user if role == "user" else None, allowed_hosts=[host])
        await serve_page(app, host, port, f"embedded NATS {rt.urls[0]}, {role} {user!r}, "
                         f"model {settings.model}")


def playground_command(
        port: int = typer.Option(8765, "--port", help="HTTP port of the page"),
        host: str = typer.Option("127.0.0.1", "--host", help="interface to listen on"),
        nats_url: str | None = typer.Option(None, "--nats-url", envvar="THREADLOG_NATS_URLS",
                                            help="a deployment's NATS URL(s); default: run "
                                                 "one embedded in this process"),
        creds: Path | None = CredsOpt,
        data_dir: Path | None = typer.Option(None, "--data-dir", envvar="THREADLOG_DATA_DIR",
                                             help="embedded mode: NATS store, keys, DuckDB"),
        role: str = typer.Option("user", "--role", help="embedded mode: connect as 'user' "
                                 "(sends prompts) or 'operator' (sees every user)"),
        user: str = typer.Option("demo-user", "--user", help="embedded mode: the user; "
                                 "with --nats-url: the user to open first"),
        agent: list[str] = typer.Option([], "--agent", help="agent names offered in the "
                                        "page (repeatable); embedded: 'assistant'"),
        model: str = typer.Option("scripted/playground", "--model",
                                  help="embedded mode: the demo agent's model")) -> None:
    """Open a web playground: users, threads, messages, streaming, approvals, canvases,
    usage, workflows."""
    if role not in ("user", "operator"):
        console.print("[red]error:[/] --role must be user or operator")
        raise typer.Exit(2)
    try:
        if nats_url:
            if creds is None:
                console.print("[red]error:[/] --nats-url needs --creds (an operator's or "
                              "a user's credentials file)")
                raise typer.Exit(2)
            main = run_remote(NatsEndpoint.of(nats_url, creds), host, port, agent, user
                              if user != "demo-user" else None)
        else:
            settings = load_settings(data_dir=data_dir, model=model)
            main = run_embedded(settings, host, port, role, user)
        asyncio.run(main)
    except ThreadlogError as exc:
        console.print(f"[red]error:[/] {exc.message}", highlight=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.print("[dim]stopped[/]")
