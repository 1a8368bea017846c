"""Operator tasks on the projections file: rebuild, status, export, SQL (for the CLI).

DuckDB lets one process open the file (even read-only opens fail while a writer holds
it). So each task either runs in the projector's process, over NATS (``query.status``,
``query.sql``), or opens the file itself when no projector is running:
:func:`open_offline` raises :class:`ProjectorRunning` when the file is locked.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
from nats.aio.client import Client as NATS

from events.connection import NatsEndpoint
from events.errors import ThreadlogError
from projections import recovery, state
from projections.erasure import PENDING_KEY
from projections.export import export_parquet
from projections.health import error_text
from projections.projector import (
    Progress,
    Projector,
    ProjectorConfig,
    open_database,
    run_until_caught_up,
)
from projections.queries.sql import SqlLimits, run_sql
from projections.views import VIEWS, view_by_name

log = logging.getLogger(__name__)


class ProjectorRunning(ThreadlogError):
    """The DuckDB file is held by a running projector (DuckDB allows one process)."""

    code = "projector_running"


class UnknownView(ThreadlogError):
    code = "unknown_view"


def open_offline(db_path: Path, *, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """Open the file when no projector holds it; ProjectorRunning if one does."""
    if read_only and not db_path.exists():
        raise ThreadlogError(f"no projections file at {db_path}: run the projector or "
                             f"`threadlog projections rebuild` first", code="not_found",
                             details={"db_path": str(db_path)})
    try:
        return open_database(db_path, read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise ProjectorRunning(
                f"{db_path} is in use by a running projector: {exc}",
                details={"db_path": str(db_path)}) from None
        raise


def check_views(names: Sequence[str]) -> list[str]:
    """The names if all are registered views; UnknownView listing the known ones if not."""
    for name in names:
        try:
            view_by_name(name)
        except KeyError as exc:
            raise UnknownView(str(exc.args[0]), details={
                "view": name, "known": [v.name for v in VIEWS]}) from None
    return list(names)


async def rebuild(nc: NATS, nats_url: str | NatsEndpoint, db_path: Path, stream: str, *,
                  views: Sequence[str] | None = None, progress: Progress | None = None
                  ) -> dict[str, Any]:
    """Reset ``views`` (all when None) and replay the log into them, up to the stream's
    end as of the call. The other views only skip. Needs the file (no running projector).
    A damaged file (not a DuckDB database) is moved aside (``<name>.damaged-<timestamp>``,
    logged) and the views built anew.
    """
    try:
        open_offline(db_path, read_only=False).close()  # ProjectorRunning before any work
    except duckdb.Error as exc:
        if not recovery.is_damaged(exc):
            raise
        moved = recovery.move_aside(db_path)
        log.warning("projections file %s is damaged (%s): moved aside to %s", db_path,
                    error_text(exc), moved)
    reset = check_views(views) if views else ["*"]
    projector = Projector(ProjectorConfig(db_path=db_path, stream=stream, reset=reset), nc,
                          nats_url)
    try:
        applied, seconds = await run_until_caught_up(projector, progress=progress)
        return {"applied": applied, "seconds": seconds, "checkpoint": projector.checkpoint,
                "views": list(views) if views else [v.name for v in VIEWS]}
    finally:
        await projector.close()


def offline_status(db_path: Path) -> dict[str, Any]:
    """Checkpoint, per-view version/seq, poison events rejected and a pending erasure on
    disk (a deletion applied before the projector stopped; it compacts on its next start)
    read from the file (no projector running)."""
    con = open_offline(db_path)
    try:
        states = state.read_states(con)
        extra = _rejections_and_erasure(con)
    finally:
        con.close()
    registered = {v.name: v.version for v in VIEWS}
    rows: list[dict[str, Any]] = [
        {"view": s.view, "version": s.version, "seq": s.seq,
         "code_version": registered.get(s.view)} for s in states.values()]
    for name, version in registered.items():
        if name not in states:
            rows.append({"view": name, "version": None, "seq": 0, "code_version": version})
    seqs = [int(r["seq"]) for r in rows if r["view"] in registered]
    return {"checkpoint": min(seqs, default=0), "views": rows, "db_path": str(db_path),
            **extra}


def _rejections_and_erasure(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    out: dict[str, Any] = {"rejected_events": 0, "last_rejected_seq": None}
    with contextlib.suppress(duckdb.CatalogException):
        row = con.execute("SELECT count(*), max(seq) FROM rejected_events").fetchone()
        if row is not None:
            out = {"rejected_events": int(row[0]), "last_rejected_seq": row[1]}
    row = con.execute("SELECT max(CAST(value AS BIGINT)) FROM _projection_meta WHERE key "
                      f"LIKE '{PENDING_KEY}%'").fetchone()
    out["erasure_pending_seq"] = None if row is None else row[0]
    return out


def offline_export(db_path: Path, out_dir: Path) -> dict[str, int]:
    con = open_offline(db_path)
    try:
        return export_parquet(con, out_dir)
    finally:
        con.close()


def offline_sql(db_path: Path, sql: str, limits: SqlLimits,
                max_rows: int | None = None) -> dict[str, Any]:
    con = open_offline(db_path)
    try:
        return run_sql(con, sql, limits, max_rows)
    finally:
        con.close()
