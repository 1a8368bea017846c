"""``threadlog health``: ask a running deployment whether it serves; exit 0 or 1.

Wire into ``threadlog/cli.py``::

    from threadlog.cli_health import health_command
    app.command("health")(health_command)

Every serving process answers ``ops.health`` (``threadlog.health``). The command prints
one table row per process (``--json``: one JSON object) and exits 0 when at least one
process answered (``--expect N``: N) and every one is ready, else 1 — also when nothing
answers in ``--timeout`` or the server cannot be reached, with one line saying so.

Where it asks: ``--nats-url`` / ``THREADLOG_NATS_URLS``, else the embedded server of
``--data-dir`` (its ports file, while ``threadlog serve`` runs). As whom: ``--creds`` /
``THREADLOG_NATS_CREDS``, else the data dir's service credentials (operator credentials
suffice). ``--local`` counts only the processes of this host (the container health check:
``threadlog health --local`` next to ``serve``, same data dir).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from events import ThreadlogError
from events.connection import NatsEndpoint
from threadlog.cli_options import CredsOpt, endpoint_for
from threadlog.health import DEFAULT_TIMEOUT_S, DEFAULT_WINDOW_S, ask_health

console = Console()


def embedded_urls(data_dir: Path) -> list[str]:
    """URLs of the embedded nats-server(s) running from ``data_dir`` (their ports files;
    files of exited servers are skipped)."""
    urls: list[str] = []
    for f in sorted((data_dir / "nats" / "ports").glob("*.ports")):
        try:
            pid = int(f.stem.rsplit("_", 1)[1])
            os.kill(pid, 0)
            urls += [u for u in json.loads(f.read_text()).get("nats") or []
                     if isinstance(u, str)]
        except (IndexError, ValueError, OSError):
            continue
    return urls


def verdict(answers: list[dict[str, Any]], *, local: bool, expect: int
            ) -> tuple[bool, list[dict[str, Any]], str]:
    """(healthy, the answers that count, a one-line summary)."""
    host = socket.gethostname()
    counted = [a for a in answers if not local or a.get("process", {}).get("hostname") == host]
    where = f" on {host}" if local else ""
    if not counted:
        return False, counted, f"no threadlog process{where} answered on ops.health"
    ready = sum(1 for a in counted if a.get("ready"))
    summary = f"{ready} of {len(counted)} process(es){where} ready"
    if len(counted) < expect:
        return False, counted, f"{summary}; expected {expect}"
    return ready == len(counted), counted, summary


async def _ask(endpoint: NatsEndpoint, timeout: float, window: float) -> list[dict[str, Any]]:
    await endpoint.probe(timeout=min(timeout, 3.0))
    nc = await endpoint.connect(connect_timeout=min(timeout, 3.0), allow_reconnect=False)
    try:
        return await ask_health(nc, timeout=timeout, window=window)
    finally:
        await nc.close()


def _table(answers: list[dict[str, Any]], summary: str) -> Table:
    table = Table(title="threadlog health", caption=summary)
    for col in ("host", "pid", "ready", "NATS", "reconnects", "subscriptions", "projector"):
        table.add_column(col)
    for a in answers:
        p, c, h = a.get("process", {}), a.get("connection") or {}, a.get("handlers") or {}
        proj = a.get("projector")
        lag = "" if proj is None or proj.get("lag") is None else f" (lag {proj['lag']})"
        table.add_row(
            str(p.get("hostname", "?")), str(p.get("pid", "?")),
            "[green]yes[/]" if a.get("ready") else "[red]no[/]",
            str(c.get("server") or "down"), str(c.get("reconnects", "?")),
            f"{h.get('active', '?')}/{h.get('subscriptions', '?')}",
            "-" if proj is None else f"{proj.get('state')}{lag}")
    return table


def _why_not(answers: list[dict[str, Any]]) -> list[str]:
    """One line per process that is not ready: where, and why."""
    return [f"not ready: {a.get('process', {}).get('hostname', '?')} pid "
            f"{a.get('process', {}).get('pid', '?')}: {'; '.join(a.get('reasons') or [])}"
            for a in answers if not a.get("ready")]


def health_command(
        nats_url: str | None = typer.Option(None, "--nats-url", envvar="THREADLOG_NATS_URLS",
                                            help="NATS URL(s), comma separated; default: "
                                                 "the embedded server of --data-dir"),
        creds: Path | None = CredsOpt,
        data_dir: Path = typer.Option(Path(".threadlog"), "--data-dir",
                                      envvar="THREADLOG_DATA_DIR"),
        as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
        local: bool = typer.Option(False, "--local",
                                   help="count only the processes of this host"),
        expect: int = typer.Option(1, "--expect", min=1,
                                   help="fewer answering processes is unhealthy"),
        timeout: float = typer.Option(DEFAULT_TIMEOUT_S, "--timeout", min=0.1,
                                      help="seconds to wait for the first answer")) -> None:
    """Ask every serving process whether it is ready; exit 0 when all are, else 1."""
    urls = nats_url or ",".join(embedded_urls(data_dir))
    error: str | None = None
    answers: list[dict[str, Any]] = []
    if not urls:
        error = (f"no --nats-url and no embedded nats-server running from {data_dir} "
                 "(is `threadlog serve` running with this --data-dir?)")
    else:
        try:
            answers = asyncio.run(_ask(endpoint_for(urls, creds, data_dir), timeout,
                                       DEFAULT_WINDOW_S))
        except ThreadlogError as exc:
            error = exc.message
        except Exception as exc:  # a refused or dropped connection: not healthy
            error = f"{type(exc).__name__}: {exc}"
    healthy, counted, summary = (False, [], error) if error is not None \
        else verdict(answers, local=local, expect=expect)
    if as_json:
        print(json.dumps({"healthy": healthy, "summary": summary, "processes": counted},
                         default=str))
    elif error is not None or not counted:
        console.print(f"[red]unhealthy:[/] {summary}", highlight=False, soft_wrap=True)
    else:
        console.print(_table(counted, summary))
        for line in _why_not(counted):
            console.print(line, highlight=False, soft_wrap=True)
    raise typer.Exit(0 if healthy else 1)
