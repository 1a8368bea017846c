"""What a view is: its tables (with a version), the event types it handles, and how it
applies one batch of those events.

A view module defines one subclass of :class:`View` and lists an instance in
``projections.views.VIEWS``. The projector creates the view's tables (``Table.ddl``) when
it first sees the view, and drops and recreates them when :attr:`View.version` differs
from the version recorded in the database, then replays the log into just that view (the
others skip those events). Then, for each batch, inside its lane's transaction, it hands
the view the batch's events of the types in :attr:`View.handles` with a sequence above
the view's checkpoint, in one of two ways:

- :class:`SqlView` (fastest; threads, messages, tool_calls, usage): :meth:`SqlView.apply`
  gets a :class:`~projections.batch.Batch` whose ``source`` is a parenthesised subquery
  with columns ``seq BIGINT`` (stream sequence), ``type VARCHAR`` (``Event.type``) and
  ``payload VARCHAR`` (the JSON envelope: ``$.data.<field>``, ``$.occurred_at``,
  ``$.user_id``...), and ``types``, the types present. DuckDB decodes the JSON
  (``json_transform``), nothing runs per event in Python. A batch may hold several
  events of one row (a message saved then finalized), so ``apply`` folds them in SQL:
  ``arg_max(field, seq)`` is the latest value, ``FILTER (WHERE f IS NOT NULL)`` skips
  events leaving a field unchanged; ``Batch.deleted_threads`` and ``delete_threads`` handle
  a deletion inside the batch (the projector drops a thread's events that precede its
  ``thread_deleted`` in the batch before any view sees them).
- Python folding (any other :class:`View`): :meth:`View.new_batch` returns a
  :class:`ViewBatch`; the projector decodes each event once with plain ``json``
  (``Envelope`` dicts, no pydantic: events were validated at append), calls
  ``add(seq, env)`` in stream order, then ``flush(con)``. :mod:`projections.tables` has
  helpers (``KeyedRows``, ``AppendedRows``) that write through Arrow.

A view must be deterministic (a function of the events only: never the wall clock), so
that a rebuild gives the same rows. ``replace=True`` is passed when the first attempt hit
a key conflict (an id saved twice in different batches): inserts then replace.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol

import duckdb

from projections.batch import Batch
from projections.tables import Table

Envelope = dict[str, Any]
"""An event envelope decoded from JSON: ``type``, ``data``, ``occurred_at``, ``user_id``..."""


class ViewBatch(Protocol):
    """The rows one batch of events produces for one Python-folding view."""

    def add(self, seq: int, env: Envelope) -> None:
        """Fold one event (stream sequence ``seq``) into the batch; events come in order."""

    def flush(self, con: duckdb.DuckDBPyConnection, *, replace: bool = False) -> None:
        """Write the batch inside the caller's transaction. May be called twice (the second
        time with ``replace=True`` after a key conflict rolled the first one back)."""


class View(ABC):
    """Base of every view: name, version, tables and handled event types.

    Implement :meth:`new_batch` (a Python-folding view), or subclass :class:`SqlView`
    and implement :meth:`SqlView.apply` (set-based SQL over the batch's JSON).
    """

    name: ClassVar[str]
    version: ClassVar[int]
    """Bump when the tables or the meaning of the rows change: the view is rebuilt."""
    tables: ClassVar[tuple[Table, ...]]
    handles: ClassVar[frozenset[str]]
    """Event types (``Event.type``) this view reads; all others never reach it."""
    lane: ClassVar[int] = 0
    """The projector's writer lane (modulo its ``lanes``): views of different lanes are
    applied in parallel, each lane in its own transaction. Give a heavy view a lane of
    its own."""
    takes_rejections: ClassVar[bool] = False
    """The view receives the batch's poison events (``add_rejection(rejection,
    stored_at)`` on its batch) instead of events: see
    :mod:`projections.views.rejected_events`."""

    def new_batch(self) -> ViewBatch:
        """An empty batch (Python-folding views)."""
        raise NotImplementedError(f"{type(self).__name__} must implement new_batch or "
                                  f"subclass SqlView")

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


class SqlView(View):
    """A view that applies each batch with set-based SQL (see the module docstring)."""

    @abstractmethod
    def apply(self, con: duckdb.DuckDBPyConnection, batch: Batch, *,
              replace: bool = False) -> None:
        """Apply ``batch`` with SQL inside the caller's transaction."""
