"""The projector's own tables: per-view version and checkpoint, and the stream identity.

``_projection_views(view, version, seq, rebuilt_at, applied_mark)``: ``seq`` is the last
stream sequence applied to the view, written in the same transaction as the view's rows.
The projector's checkpoint is the smallest ``seq`` over the registered views.
``applied_mark`` (``"<seq>:<hex digest>"``, written by the same UPDATE: no extra statement)
is the last event of the batch that moved ``seq``: its sequence and a digest of its
subject and payload, so a restart recognises a sequence that the stream reused after
losing its tail (:mod:`projections.recovery`). Files from before it get the column on
open.

``_projection_meta(key, value)`` records the stream the views were built from (name and
creation time); a different stream (recreated, or another one) resets every view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from projections.view import View

DDL = (
    "CREATE TABLE IF NOT EXISTS _projection_views (view VARCHAR PRIMARY KEY, "
    "version INTEGER NOT NULL, seq BIGINT NOT NULL, rebuilt_at TIMESTAMPTZ)",
    "CREATE TABLE IF NOT EXISTS _projection_meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    "ALTER TABLE _projection_views ADD COLUMN IF NOT EXISTS applied_mark VARCHAR",
)
META_TABLES = ("_projection_views", "_projection_meta")


@dataclass(frozen=True)
class ViewState:
    view: str
    version: int
    seq: int


def create_state_tables(con: duckdb.DuckDBPyConnection) -> None:
    for stmt in DDL:
        con.execute(stmt)


def read_states(con: duckdb.DuckDBPyConnection) -> dict[str, ViewState]:
    rows = con.execute("SELECT view, version, seq FROM _projection_views").fetchall()
    return {r[0]: ViewState(r[0], int(r[1]), int(r[2])) for r in rows}


def read_meta(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    # fetchall: a result left unfinished blocks the connection's next statement
    rows = con.execute("SELECT value FROM _projection_meta WHERE key = ?", [key]).fetchall()
    return None if not rows else str(rows[0][0])


def recorded_stream_id(con: duckdb.DuckDBPyConnection) -> str | None:
    """The identity of the stream the views were built from (None: a new file)."""
    try:
        return read_meta(con, "stream_id")
    except duckdb.CatalogException:
        return None


def read_mark(con: duckdb.DuckDBPyConnection) -> tuple[int, bytes] | None:
    """The last event applied as recorded (``applied_mark`` of the furthest view):
    ``(seq, digest)``, None when unknown."""
    rows = con.execute("SELECT applied_mark FROM _projection_views WHERE applied_mark IS "
                       "NOT NULL ORDER BY seq DESC LIMIT 1").fetchall()
    if not rows:
        return None
    seq, _, digest = str(rows[0][0]).partition(":")
    try:
        return int(seq), bytes.fromhex(digest)
    except ValueError:
        return None


def write_meta(con: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
    con.execute("INSERT OR REPLACE INTO _projection_meta VALUES (?, ?)", [key, value])


def reset_view(con: duckdb.DuckDBPyConnection, view: View) -> None:
    """Drop and recreate the view's tables and set its checkpoint to 0 (caller commits)."""
    view.drop(con)
    view.create(con)
    con.execute("INSERT OR REPLACE INTO _projection_views (view, version, seq, rebuilt_at) "
                "VALUES (?, ?, 0, now())",
                [view.name, view.version])


def prepare_views(con: duckdb.DuckDBPyConnection, views: Sequence[View], *,
                  stream_id: str | None, reset: Sequence[str] = ()) -> dict[str, ViewState]:
    """Bring the database to the registered views, in one transaction; return their states.

    A view that is new, whose version changed, that is named in ``reset``, or every view
    when ``stream_id`` differs from the recorded one, is reset to be rebuilt from the log.
    """
    con.begin()
    try:
        create_state_tables(con)
        states = read_states(con)
        all_reset = False
        if stream_id is not None:
            known = read_meta(con, "stream_id")
            all_reset = known is not None and known != stream_id
            write_meta(con, "stream_id", stream_id)
        for view in views:
            st = states.get(view.name)
            if all_reset or view.name in reset or st is None or st.version != view.version:
                reset_view(con, view)
            else:
                view.create(con)  # IF NOT EXISTS: repairs a missing index after a crash
        con.commit()
    except BaseException:
        con.rollback()
        raise
    wanted = {view.name for view in views}
    return {name: st for name, st in read_states(con).items() if name in wanted}


def advance(con: duckdb.DuckDBPyConnection, names: Sequence[str], seq: int,
            mark: tuple[int, bytes] | None = None) -> None:
    """Record that ``names`` have applied everything up to ``seq`` (inside the batch txn),
    and ``mark`` (``(seq, digest)`` of the batch's last event) as their ``applied_mark``."""
    if not names:
        return
    # View names are code constants; literals plan faster than an unnest() subquery.
    views = ", ".join("'" + n.replace("'", "''") + "'" for n in names)
    value = None if mark is None else f"{int(mark[0])}:{mark[1].hex()}"
    con.execute(f"UPDATE _projection_views SET seq = $1, applied_mark = $2 "
                f"WHERE seq < $1 AND view IN ({views})", [seq, value])
