"""What a view is: its tables (with a version), the event types it handles, and a batch.

A view module defines one subclass of :class:`View` and lists an instance in
``projections.views.VIEWS``. The projector:

- creates the view's tables from :attr:`View.tables` (``Table.ddl``) when it first sees
  the view, and drops and recreates them when :attr:`View.version` differs from the
  version recorded in the database, then replays the log into just that view;
- for each batch of events calls :meth:`View.new_batch`, passes every event whose
  ``type`` is in :attr:`View.handles` (and whose sequence is above the view's own
  checkpoint) to :meth:`ViewBatch.add`, in stream order, then calls
  :meth:`ViewBatch.flush` inside the batch's transaction.

Events reach views as plain dicts (the JSON envelope, ``raw_envelope``): they were
validated when appended, so views read ``env["data"][...]`` without pydantic. A view must
be deterministic (a function of the events only: never the wall clock), so that a
rebuild gives the same rows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol

import duckdb

from projections.tables import Table

Envelope = dict[str, Any]
"""An event envelope decoded from JSON: ``type``, ``data``, ``occurred_at``, ``user_id``..."""


class ViewBatch(Protocol):
    """The rows one batch of events produces for one view."""

    def add(self, seq: int, env: Envelope) -> None:
        """Fold one event (stream sequence ``seq``) into the batch; events come in order."""

    def flush(self, con: duckdb.DuckDBPyConnection, *, replace: bool = False) -> None:
        """Write the batch inside the caller's transaction. May be called twice (the second
        time with ``replace=True`` after a key conflict rolled the first one back)."""


class View(ABC):
    """Base of every view. Subclasses set the class attributes and implement new_batch."""

    name: ClassVar[str]
    version: ClassVar[int]
    """Bump when the tables or the meaning of the rows change: the view is rebuilt."""
    tables: ClassVar[tuple[Table, ...]]
    handles: ClassVar[frozenset[str]]
    """Event types (``Event.type``) this view reads; all others never reach it."""

    @abstractmethod
    def new_batch(self) -> ViewBatch:
        """An empty batch."""

    def create(self, con: duckdb.DuckDBPyConnection) -> None:
        for table in self.tables:
            for stmt in table.ddl():
                con.execute(stmt)

    def drop(self, con: duckdb.DuckDBPyConnection) -> None:
        for table in self.tables:
            con.execute(f'DROP TABLE IF EXISTS "{table.name}"')

    @property
    def table_names(self) -> list[str]:
        return [t.name for t in self.tables]
