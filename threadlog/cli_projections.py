"""CLI for projections: ``threadlog projections rebuild|status|export`` and ``threadlog sql``.

With ``--nats-url`` (and no ``--db``), ``status`` and ``sql`` ask that deployment and
never read a local file. DuckDB allows one process per file: ``status`` and ``sql`` ask a
running projector over
NATS (``ops.status`` / ``ops.sql``: operator or service credentials) when the file is
held, and read the file directly when it is not; ``rebuild`` and ``export`` need the
file (stop the projector first).
``threadlog sql`` is for operators: it sees every user's rows (read-only, row and time
limits apply).
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from events import ThreadlogError
from events.connection import NatsEndpoint
from events.replies import Reply
from projections import admin
from projections.queries.sql import SqlLimits
from threadlog.cli_options import CredsOpt, endpoint_for
from threadlog.settings import load_settings

projections_app = typer.Typer(help="DuckDB read models: rebuild, status, export.")
console = Console()
err = Console(stderr=True)

NatsUrlOpt = typer.Option(None, "--nats-url", envvar="THREADLOG_NATS_URLS",
                          help="NATS URL of the event log (and of a running projector)")
DbOpt = typer.Option(None, "--db", help="DuckDB file (default: <data-dir>/threadlog.duckdb)")
DataDirOpt = typer.Option(None, "--data-dir", envvar="THREADLOG_DATA_DIR")
StreamOpt = typer.Option(None, "--stream", help="events stream (default: EVENTS)")


def _paths(db: Path | None, data_dir: Path | None, stream: str | None,
           nats_url: str | None, creds: Path | None = None
           ) -> tuple[Path, str, NatsEndpoint | None]:
    settings = load_settings(data_dir=data_dir, nats_urls=nats_url)
    endpoint = endpoint_for(settings.nats_urls, creds, settings.data_dir) \
        if settings.nats_urls else None
    return db or settings.duckdb_path, stream or settings.events_stream, endpoint


def _fail(exc: ThreadlogError) -> typer.Exit:
    err.print(f"[red]error ({exc.code}):[/] {exc.message}")
    return typer.Exit(1)


async def _connect(url: NatsEndpoint | None) -> Any:
    if not url:
        raise ThreadlogError("--nats-url is required for this command", code="invalid_input")
    await url.probe(timeout=3)  # Unavailable, one line, when unreachable or refused
    return await url.connect(connect_timeout=3)


async def _ask(url: NatsEndpoint | None, subject: str, body: dict[str, Any],
               timeout: float) -> Any:
    nc = await _connect(url)
    try:
        msg = await nc.request(subject, jsonlib.dumps(body).encode(), timeout=timeout)
    except Exception as exc:
        raise ThreadlogError(f"no answer on {subject}: {exc}", code="unavailable") from None
    finally:
        await nc.close()
    return Reply.model_validate_json(msg.data).unwrap()


# ---------------------------------------------------------------------------- rebuild
async def rebuild_async(url: NatsEndpoint | None, db_path: Path, stream: str,
                        view: str | None) -> dict[str, Any]:
    """Rebuild ``view`` (or all) with a rich progress bar (events/s, ETA)."""
    nc = await _connect(url)
    try:
        info = await nc.jetstream().stream_info(stream)
        total = int(info.state.last_seq)
        started = time.perf_counter()
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]} events/s"), TimeRemainingColumn())
        with Progress(*columns, console=err) as bar:
            task = bar.add_task(f"rebuild {view or 'all views'}", total=total, rate="-")
            applied = 0

            def progress(checkpoint: int, count: int, pending: int) -> None:
                nonlocal applied
                applied += count
                rate = applied / max(time.perf_counter() - started, 1e-6)
                bar.update(task, completed=min(checkpoint, total), rate=f"{rate:,.0f}")

            assert url is not None
            result = await admin.rebuild(nc, url, db_path, stream,
                                         views=[view] if view else None, progress=progress)
            bar.update(task, completed=total)
        return result
    finally:
        await nc.close()


@projections_app.command("rebuild")
def rebuild_command(view: str | None = typer.Option(None, "--view", help="only this view"),
                    nats_url: str | None = NatsUrlOpt, db: Path | None = DbOpt,
                    data_dir: Path | None = DataDirOpt, stream: str | None = StreamOpt,
                    creds: Path | None = CredsOpt) -> None:
    """Rebuild every view (or one) from the event log. Stop the projector first."""
    db_path, stream_name, url = _paths(db, data_dir, stream, nats_url, creds)
    try:
        if view:
            admin.check_views([view])
        result = asyncio.run(rebuild_async(url, db_path, stream_name, view))
    except ThreadlogError as exc:
        raise _fail(exc) from None
    rate = result["applied"] / max(result["seconds"], 1e-6)
    console.print(f"rebuilt {', '.join(result['views'])}: {result['applied']:,} events in "
                  f"{result['seconds']:.1f}s ({rate:,.0f}/s), checkpoint "
                  f"{result['checkpoint']}")


# ---------------------------------------------------------------------------- status
async def status_async(url: NatsEndpoint | None, db_path: Path, stream: str, *,
                       file_first: bool = True) -> dict[str, Any]:
    """From the file when free (``file_first``), else from the running projector
    (``ops.status``)."""
    try:
        if not file_first and url is not None:
            raise admin.ProjectorRunning("a deployment was named: ask it")
        status = admin.offline_status(db_path)
    except admin.ProjectorRunning:
        result: dict[str, Any] = await _ask(url, "ops.status", {"user_id": "operator"}, 5)
        result["source"] = "running projector"
        return result
    status["source"] = "file"
    status["stream"] = stream
    if url:
        nc = await _connect(url)
        try:
            info = await nc.jetstream().stream_info(stream)
            status["stream_last_seq"] = int(info.state.last_seq)
            status["lag"] = max(0, status["stream_last_seq"] - status["checkpoint"])
        finally:
            await nc.close()
    return status


@projections_app.command("status")
def status_command(nats_url: str | None = NatsUrlOpt, db: Path | None = DbOpt,
                   data_dir: Path | None = DataDirOpt, stream: str | None = StreamOpt,
                   json: bool = typer.Option(False, "--json", help="one JSON object"),
                   creds: Path | None = CredsOpt) -> None:
    """Checkpoint, lag behind the stream, and each view's version."""
    db_path, stream_name, url = _paths(db, data_dir, stream, nats_url, creds)
    try:
        # A named deployment (--nats-url) is asked, never a local file it may not be:
        # only an explicit --db reads a file first.
        status = asyncio.run(status_async(url, db_path, stream_name,
                                          file_first=db is not None or url is None))
    except ThreadlogError as exc:
        raise _fail(exc) from None
    if json:
        typer.echo(jsonlib.dumps(status, default=str))
        return
    console.print(f"checkpoint [bold]{status['checkpoint']}[/] "
                  f"(stream last {status.get('stream_last_seq', '?')}, "
                  f"lag {status.get('lag', '?')}) from {status['source']}")
    pj = status.get("projector")
    if pj:
        line = Text(f"projector {pj['state']} since {pj['since']}")
        if pj.get("last_error"):
            line.append(f": {pj['last_error']}", style="red")
        console.print(line)
    table = Table("view", "version", "seq")
    for v in status["views"]:
        table.add_row(v["view"], str(v.get("version")), str(v.get("seq")))
    console.print(table)


# ---------------------------------------------------------------------------- export
@projections_app.command("export")
def export_command(parquet: Path = typer.Option(..., "--parquet", help="output directory"),
                   db: Path | None = DbOpt, data_dir: Path | None = DataDirOpt) -> None:
    """Write every view to <DIR>/<table>.parquet (needs the file: stop the projector)."""
    db_path, _, _ = _paths(db, data_dir, None, None)
    try:
        counts = admin.offline_export(db_path, parquet)
    except ThreadlogError as exc:
        raise _fail(exc) from None
    for table, n in counts.items():
        console.print(f"{parquet / (table + '.parquet')}: {n:,} rows")


# ---------------------------------------------------------------------------- sql
async def sql_async(sql: str, url: NatsEndpoint | None, db_path: Path, max_rows: int | None,
                    *, file_first: bool = True) -> dict[str, Any]:
    """Offline on the file when free (``file_first``); else ``ops.sql`` on the running
    projector."""
    try:
        if not file_first and url is not None:
            raise admin.ProjectorRunning("a deployment was named: ask it")
        return admin.offline_sql(db_path, sql, SqlLimits(), max_rows)
    except admin.ProjectorRunning:
        body: dict[str, Any] = {"user_id": "operator", "sql": sql}
        if max_rows:
            body["max_rows"] = max_rows
        result: dict[str, Any] = await _ask(url, "ops.sql", body, 30)
        return result


def sql_command(sql: str = typer.Argument(..., help="read-only SQL (SELECT, WITH, EXPLAIN, "
                                          "DESCRIBE, SHOW)"),
                json: bool = typer.Option(False, "--json", help="one JSON object: columns, "
                                          "types, rows"),
                max_rows: int | None = typer.Option(None, "--max-rows"),
                nats_url: str | None = NatsUrlOpt, db: Path | None = DbOpt,
                data_dir: Path | None = DataDirOpt, creds: Path | None = CredsOpt) -> None:
    """Run read-only SQL over the views (operators: every user's rows are visible)."""
    db_path, _, url = _paths(db, data_dir, None, nats_url, creds)
    try:
        result = asyncio.run(sql_async(sql, url, db_path, max_rows,
                                       file_first=db is not None or url is None))
    except ThreadlogError as exc:
        if json:
            typer.echo(jsonlib.dumps({"error": exc.to_dict()}))
            raise typer.Exit(1) from None
        raise _fail(exc) from None
    if json:
        typer.echo(jsonlib.dumps(result))
        return
    table = Table(*result["columns"])
    for row in result["rows"]:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    console.print(table)
    console.print(f"[dim]{result['row_count']} row(s)[/]")
