"""One batch of events as a view sees it: a SQL source and the event types it contains."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb

from projections.erasure import note_removed


@dataclass(frozen=True)
class Batch:
    """``source`` is a parenthesised subquery with columns ``seq``, ``type``, ``payload``
    (the JSON envelope as VARCHAR) holding the events this view must apply, in any order
    (sort or aggregate by ``seq``). ``types`` are the event types present in it."""

    source: str
    types: frozenset[str]
    floor: int = 0
    """The view's checkpoint: events at or below it are not in ``source``."""
    first: int = 0
    """The first sequence of the whole batch. A view's rows stored before this batch have
    a ``seq`` at or below ``max(floor, first - 1)``: below ``first`` (earlier batches;
    ``floor`` may lag while a lane catches up), or at or below ``floor`` (a restart resumes
    at the slowest view's checkpoint, below this view's)."""
    whole: str | None = None
    """The whole batch's table (all views), for lookups shared between views."""
    shared: dict[str, Any] = field(default_factory=dict, compare=False)

    def has(self, *types: str) -> bool:
        return not self.types.isdisjoint(types)

    def deleted_threads(self, con: duckdb.DuckDBPyConnection) -> list[tuple[str, int]]:
        """``(thread_id, seq)`` of each ``thread_deleted`` in the batch (last one per id)."""
        if "thread_deleted" not in self.types:
            return []
        rows = self.shared.get("thread_deleted")
        if rows is None:  # computed once per batch over the whole batch, for every view
            rows = con.execute(
                f"SELECT payload->>'$.data.thread_id' AS t, seq FROM "
                f"{self.whole or self.source} WHERE type = 'thread_deleted'").fetchall()
            self.shared["thread_deleted"] = rows
        last: dict[str, int] = {}
        for t, s in rows:
            if t is not None and s > self.floor:
                last[str(t)] = max(int(s), last.get(str(t), 0))
        return sorted(last.items())


def latest_only(key: str, replace: bool) -> str:
    """With ``replace`` (the re-applied batch after a key conflict), the clause keeping
    only the latest event (by ``seq``) of each ``key``: ``INSERT OR REPLACE`` takes one
    row per key. Empty otherwise (a key twice in one batch then raises the conflict)."""
    if not replace:
        return ""
    return f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY seq DESC) = 1"


def delete_threads(con: duckdb.DuckDBPyConnection, table: str,
                   deleted: list[tuple[str, int]]) -> None:
    """Delete the stored rows of ``table`` whose ``thread_id`` was deleted in the batch
    (the count goes to :func:`projections.erasure.note_removed`: erasure on disk)."""
    if deleted:
        row = con.execute(f'DELETE FROM "{table}" WHERE thread_id IN '
                          "(SELECT unnest(?::VARCHAR[]))", [[t for t, _ in deleted]]).fetchone()
        note_removed(int(row[0]) if row else 0)


class Fields:
    """Many JSON paths of ``payload`` read with one ``json_extract_string`` call (cheaper to
    plan and run than one function per field). ``f["name"]`` is the SQL of a field as
    VARCHAR (NULL when absent or JSON null); ``f.cast("name", "BIGINT")`` converts it."""

    def __init__(self, alias: str = "f", **paths: str) -> None:
        self.alias = alias
        self._index = {name: i + 1 for i, name in enumerate(paths)}
        self._paths = list(paths.values())

    def extract(self, column: str = "payload") -> str:
        paths = ", ".join(f"'{p}'" for p in self._paths)
        return f"json_extract_string({column}, [{paths}]) AS {self.alias}"

    def __getitem__(self, name: str) -> str:
        return f"{self.alias}[{self._index[name]}]"

    def cast(self, name: str, sql_type: str) -> str:
        return f"CAST({self[name]} AS {sql_type})"
