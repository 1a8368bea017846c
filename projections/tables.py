"""Projected tables and the batched writes of views that fold events in Python.

A :class:`Table` is a table's schema (columns, key, secondary indexes) and its DDL. Keys
are PRIMARY KEYs (ART indexes): point reads and ``UPDATE ... FROM`` touch only the rows
concerned, at the price of slower bulk inserts; append-only tables have none.

SQL views (:class:`projections.view.SqlView`) write with their own set-based statements.
Python-folding views collect one batch of rows in Python (:class:`KeyedRows` for rows
with a key that later events update, :class:`AppendedRows` for append-only facts) and
write it with a handful of set-based statements over an Arrow table: ``INSERT ...
SELECT``, ``UPDATE ... FROM``, ``DELETE``.
Nothing here runs per row in SQL; per-row work is plain Python dict folding.

Write semantics of :class:`KeyedRows` within one batch, in event order:
- ``insert(key, row)`` adds a new row (replacing an earlier one of the batch);
- ``patch(key, fields)`` sets the non-``None`` ``fields`` on the row (``None`` means
  "unchanged"). A patch of a row inserted earlier in the batch is folded into it in Python;
  a patch of a stored row becomes one ``UPDATE ... FROM``. With ``upsert_patches`` a patch
  of a key that is stored nowhere creates the row (``INSERT ... ON CONFLICT``);
  otherwise it is a no-op.
- ``delete_group(value)`` removes every row whose ``group_column`` equals ``value``:
  earlier rows of the batch are dropped in Python and stored rows are deleted first at
  flush, so rows inserted after the deletion (same batch) survive.

Failure mode: inserting a key that is already stored raises ``duckdb.ConstraintException``;
the projector then re-applies the batch with ``replace=True`` (``INSERT OR REPLACE``).
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from projections.erasure import note_removed

_ARROW_TYPES: dict[str, pa.DataType] = {
    "BIGINT": pa.int64(),
    "INTEGER": pa.int64(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
}
_names = itertools.count()


@dataclass(frozen=True)
class Table:
    """One table: ``columns`` maps name to SQL type (VARCHAR, JSON, TIMESTAMPTZ, DATE,
    BIGINT, INTEGER, DOUBLE, BOOLEAN). JSON, TIMESTAMPTZ and DATE values are passed as
    strings (ISO 8601 / JSON text) and cast by DuckDB."""

    name: str
    columns: dict[str, str]
    key: tuple[str, ...] = ()
    indexes: tuple[tuple[str, ...], ...] = ()

    def ddl(self) -> list[str]:
        cols = [f'"{c}" {t}' for c, t in self.columns.items()]
        if self.key:
            cols.append("PRIMARY KEY (" + ", ".join(f'"{k}"' for k in self.key) + ")")
        out = [f'CREATE TABLE IF NOT EXISTS "{self.name}" (' + ", ".join(cols) + ")"]
        for n, idx in enumerate(self.indexes):
            out.append(f'CREATE INDEX IF NOT EXISTS "{self.name}_idx{n}" ON "{self.name}" ('
                       + ", ".join(f'"{c}"' for c in idx) + ")")
        return out

    @property
    def column_list(self) -> str:
        return ", ".join(f'"{c}"' for c in self.columns)

    def insert_verb(self, replace: bool) -> str:
        """``INSERT OR REPLACE INTO t (...)`` when replacing (keyed tables), else ``INSERT``."""
        verb = "INSERT OR REPLACE" if replace and self.key else "INSERT"
        return f'{verb} INTO "{self.name}" ({self.column_list})'

    def _arrow(self, names: Sequence[str], rows: Sequence[dict[str, Any]]) -> pa.Table:
        arrays = []
        for c in names:
            typ = _ARROW_TYPES.get(self.columns[c], pa.string())
            arrays.append(pa.array([r.get(c) for r in rows], type=typ))
        return pa.Table.from_arrays(arrays, names=list(names))

    def _select(self, names: Sequence[str], src: str) -> str:
        return ", ".join(f'CAST({src}."{c}" AS {self.columns[c]}) AS "{c}"' for c in names)

    def insert(self, con: duckdb.DuckDBPyConnection, rows: Sequence[dict[str, Any]], *,
               replace: bool = False) -> None:
        """Insert ``rows`` (dicts; missing columns are NULL) with one statement."""
        if not rows:
            return
        names = list(self.columns)
        with _registered(con, self._arrow(names, rows)) as src:
            verb = "INSERT OR REPLACE" if replace and self.key else "INSERT"
            con.execute(f'{verb} INTO "{self.name}" SELECT {self._select(names, src)} FROM {src}')

    def update(self, con: duckdb.DuckDBPyConnection, patches: Sequence[dict[str, Any]],
               columns: Sequence[str]) -> None:
        """Set the non-NULL ``columns`` of each patch on the stored row with the same key."""
        if not patches:
            return
        names = [*self.key, *(c for c in columns if c not in self.key)]
        with _registered(con, self._arrow(names, patches)) as src:
            sets = ", ".join(f'"{c}" = COALESCE(CAST({src}."{c}" AS {self.columns[c]}), '
                             f'"{self.name}"."{c}")' for c in columns if c not in self.key)
            where = " AND ".join(f'"{self.name}"."{k}" = {src}."{k}"' for k in self.key)
            con.execute(f'UPDATE "{self.name}" SET {sets} FROM {src} WHERE {where}')

    def upsert(self, con: duckdb.DuckDBPyConnection, patches: Sequence[dict[str, Any]],
               columns: Sequence[str]) -> None:
        """Insert each patch as a row, or set its non-NULL ``columns`` on the stored row."""
        if not patches:
            return
        names = list(self.columns)
        with _registered(con, self._arrow(names, patches)) as src:
            sets = ", ".join(f'"{c}" = COALESCE(excluded."{c}", "{self.name}"."{c}")'
                             for c in columns if c not in self.key)
            keys = ", ".join(f'"{k}"' for k in self.key)
            con.execute(f'INSERT INTO "{self.name}" SELECT {self._select(names, src)} FROM {src} '
                        f"ON CONFLICT ({keys}) DO UPDATE SET {sets}")

    def delete_where_in(self, con: duckdb.DuckDBPyConnection, column: str,
                        values: Iterable[str]) -> None:
        """Delete the rows whose ``column`` is in ``values`` (the count goes to
        :func:`projections.erasure.note_removed`: erasure on disk)."""
        vals = list(values)
        if vals:
            row = con.execute(f'DELETE FROM "{self.name}" WHERE "{column}" IN '
                              f"(SELECT unnest($1::VARCHAR[]))", [vals]).fetchone()
            note_removed(int(row[0]) if row else 0)


class _registered:
    """Register an Arrow table under a unique name for the duration of a ``with``."""

    def __init__(self, con: duckdb.DuckDBPyConnection, table: pa.Table) -> None:
        self.con, self.table = con, table
        self.name = f"_batch_{next(_names)}"

    def __enter__(self) -> str:
        self.con.register(self.name, self.table)
        return self.name

    def __exit__(self, et: type[BaseException] | None, *exc: object) -> None:
        try:
            self.con.unregister(self.name)
        except duckdb.Error:
            # In a transaction aborted by the statement's own error, unregistering fails
            # too; the rollback that follows drops the registration anyway.
            if et is None:
                raise


@dataclass
class KeyedRows:
    """One batch of writes to a keyed table (see the module docstring for the semantics)."""

    table: Table
    patch_columns: tuple[str, ...]
    group_column: str | None = None
    upsert_patches: bool = False
    new: dict[Hashable, dict[str, Any]] = field(default_factory=dict)
    patches: dict[Hashable, dict[str, Any]] = field(default_factory=dict)
    deleted_groups: list[str] = field(default_factory=list)

    def insert(self, key: Hashable, row: dict[str, Any]) -> None:
        self.patches.pop(key, None)
        self.new[key] = row

    def patch(self, key: Hashable, fields: dict[str, Any]) -> None:
        row = self.new.get(key)
        if row is None:
            row = self.patches.get(key)
            if row is None:
                self.patches[key] = {k: v for k, v in fields.items() if v is not None}
                return
        for k, v in fields.items():
            if v is not None:
                row[k] = v

    def delete_group(self, value: str) -> None:
        col = self.group_column
        assert col is not None, "delete_group needs a group_column"
        for rows in (self.new, self.patches):
            for key in [k for k, r in rows.items() if r.get(col) == value]:
                del rows[key]
        self.deleted_groups.append(value)

    def __len__(self) -> int:
        return len(self.new) + len(self.patches) + len(self.deleted_groups)

    def flush(self, con: duckdb.DuckDBPyConnection, *, replace: bool = False) -> None:
        """Write the batch: deletions, then new rows, then patches. Does not clear it."""
        if self.group_column is not None:
            self.table.delete_where_in(con, self.group_column, self.deleted_groups)
        if self.upsert_patches:
            self.table.upsert(con, [*self.new.values(), *self.patches.values()],
                              self.patch_columns)
            return
        self.table.insert(con, list(self.new.values()), replace=replace)
        self.table.update(con, list(self.patches.values()), self.patch_columns)


@dataclass
class AppendedRows:
    """One batch of append-only rows (facts never updated, e.g. usage records)."""

    table: Table
    rows: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def flush(self, con: duckdb.DuckDBPyConnection, *, replace: bool = False) -> None:
        self.table.insert(con, self.rows, replace=replace)
