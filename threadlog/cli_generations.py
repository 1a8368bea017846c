"""``threadlog generations limit [N]``: the limit on generations running at once across
every handler process, read or changed live through a running deployment
(``ops.generations.limit.*``: operator or service credentials).

Guarantees: one request to a handler process (``handlers.generation_limits``); ``N``
sets the limit (0 pauses: no generation starts its steps, running ones finish); without
``N`` the limit and the counts are printed. Failure modes: a refused request
(``invalid_input``, ``not_enabled`` where the deployment runs without a limit), no
server or no handler process answering (``unavailable``) and bad credentials print one
line ``error: [code] message`` on stderr and exit 1; nothing prints a traceback.

Wired into ``threadlog/cli.py`` with ``app.add_typer(generations_app, name="generations")``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer

from events import ThreadlogError
from handlers.generation_limits import subjects
from threadlog.cli_options import CredsOpt, DataDir, NatsUrl, ops_request

generations_app = typer.Typer(help="Generations across the deployment: the parallelism "
                                   "limit (operators).", no_args_is_help=True)
def describe(st: dict[str, Any]) -> str:
    """One line: the limit (or paused, or off) and the counts."""
    if not st.get("enabled"):
        return "no generation limit (THREADLOG_GENERATION_PARALLELISM is not set)"
    limit = "paused (0)" if st["paused"] else str(st["max_parallelism"])
    return f"limit {limit}; running {st['running']}; waiting {st['waiting']}"


@generations_app.command("limit")
def limit_command(max_parallelism: int | None = typer.Argument(
                      None, metavar="N", help="the new limit (0 pauses); without it, show"),
                  nats_url: str = NatsUrl, creds: Path | None = CredsOpt,
                  data_dir: Path | None = DataDir,
                  as_json: bool = typer.Option(False, "--json", help="one JSON document")
                  ) -> None:
    """Show or set the limit on generations running at once (across every process)."""
    if max_parallelism is None:
        subject, body = subjects.GET_GENERATION_LIMIT, {}
    else:
        subject, body = subjects.SET_GENERATION_LIMIT, {"max_parallelism": max_parallelism}
    try:
        st = asyncio.run(ops_request(nats_url, creds, data_dir, subject, body))
    except ThreadlogError as exc:
        typer.echo(f"error: [{exc.code}] {exc.message}", err=True)
        raise typer.Exit(1) from None
    except Exception as exc:  # a connection error nats-py raised: one line, no traceback
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(st) if as_json else describe(st))
