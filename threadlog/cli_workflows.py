"""``threadlog workflows list|status RUN|cancel RUN``: workflow runs of any user, through
the running ``serve`` (``ops.workflows.*``: operator or service credentials).

Guarantees: each command is one request to the workflows part of a running ``serve``
(``scheduler.workflows.service``); ``cancel`` is idempotent (its command id derives
from the run id). Failure modes: a refused request (``not_found``, ``forbidden``,
``invalid_transition``...), no server or no ``serve`` answering (``unavailable``) and
bad credentials print one line ``error: [code] message`` on stderr and exit 1; nothing
prints a traceback.

Wired into ``threadlog/cli.py`` with ``app.add_typer(workflows_app, name="workflows")``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from events import ThreadlogError
from events.ids import derived_id
from threadlog.cli_options import CredsOpt, DataDir, NatsUrl, ops_request

workflows_app = typer.Typer(help="Workflow runs: list, status, cancel (operators).",
                            no_args_is_help=True)
console = Console()
TIMEOUT = 30.0


def _run(nats_url: str, creds: Path | None, data_dir: Path | None, op: str,
         body: dict[str, Any]) -> Any:
    try:
        return asyncio.run(ops_request(nats_url, creds, data_dir, f"ops.workflows.{op}", body,
                                       timeout=TIMEOUT, answering="ops.workflows.*"))
    except ThreadlogError as exc:
        typer.echo(f"error: [{exc.code}] {exc.message}", err=True)
    except Exception as exc:  # a connection error nats-py raised: one line, no traceback
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
    raise typer.Exit(1)


@workflows_app.command("list")
def list_command(nats_url: str = NatsUrl, creds: Path | None = CredsOpt,
                 data_dir: Path | None = DataDir,
                 name: str | None = typer.Option(None, "--name", help="only this workflow"),
                 user: str | None = typer.Option(None, "--user", help="only this user's"),
                 limit: int = typer.Option(50, "--limit", min=1, max=1000),
                 as_json: bool = typer.Option(False, "--json", help="one JSON document")
                 ) -> None:
    """The most recent runs, newest first."""
    body = {k: v for k, v in {"name": name, "user_id": user, "limit": limit}.items()
            if v is not None}
    items = _run(nats_url, creds, data_dir, "list", body)["items"]
    if as_json:
        typer.echo(json.dumps(items))
        return
    table = Table("run_id", "name", "v", "user", "state", "steps", "updated")
    for r in items:
        table.add_row(r["run_id"], r["name"], str(r["version"]), r["user_id"] or "-",
                      r["state"], str(r["steps"]), r["updated_at"] or "")
    console.print(table)


@workflows_app.command("status")
def status_command(run_id: str = typer.Argument(..., metavar="RUN"),
                   nats_url: str = NatsUrl, creds: Path | None = CredsOpt,
                   data_dir: Path | None = DataDir,
                   as_json: bool = typer.Option(False, "--json")) -> None:
    """A run's state, result or error, and its steps."""
    st = _run(nats_url, creds, data_dir, "status", {"run_id": run_id})
    if as_json:
        typer.echo(json.dumps(st))
        return
    for key in ("run_id", "name", "version", "user_id", "state", "generation", "steps",
                "updated_at", "result", "error"):
        value = st.get(key)
        console.print(f"{key:11} {json.dumps(value) if key in ('result', 'error') else value}",
                      markup=False, highlight=False)


@workflows_app.command("cancel")
def cancel_command(run_id: str = typer.Argument(..., metavar="RUN"),
                   nats_url: str = NatsUrl, creds: Path | None = CredsOpt,
                   data_dir: Path | None = DataDir,
                   reason: str = typer.Option("canceled by an operator", "--reason")) -> None:
    """Cancel a run (it stops at its next step boundary)."""
    body = {"command_id": derived_id("cli-cancel", run_id), "run_id": run_id,
            "reason": reason}
    res = _run(nats_url, creds, data_dir, "cancel", body)
    console.print(f"cancel requested for {res['run_id']} (state {res['state']})",
                  markup=False, highlight=False)
