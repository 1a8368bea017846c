"""Projections: DuckDB read models rebuilt from the event log, exactly once.

One process, the projector (:class:`~projections.projector.Projector`), owns the DuckDB
file. It reads the EVENTS stream in order with a lean ordered push consumer
(:mod:`projections.feed`) from its checkpoint + 1, applies events in batches, and records
each view's checkpoint (last stream sequence applied) in the same DuckDB transaction as
the view's rows (:mod:`projections.state`). Views are spread over writer lanes
(``View.lane``, ``ProjectorConfig.lanes``): each lane applies its views' share of a batch
in its own transaction on its own connection, in parallel with the other lanes. Killing
it at any moment and restarting gives the tables of a clean rebuild. Queries are served
by the same process over core NATS request/reply (:mod:`projections.queries`): typed reads
with ownership checks, ``min_seq`` read-your-writes, and read-only analytical SQL for
operators.

Adding a view
-------------
1. Write ``projections/views/<name>.py`` with a subclass of
   :class:`~projections.view.View`: ``name``; ``version`` (an int: bump it whenever the
   tables or the meaning of the rows change); ``tables`` (:class:`~projections.tables.Table`
   schemas: columns, primary key, indexes); ``handles`` (the ``Event.type`` values it
   reads; add ``"thread_deleted"`` if it holds thread content, invariant 8). Then either
   - subclass :class:`~projections.view.SqlView` and implement ``apply(con, batch)``:
     set-based SQL over ``batch.source`` (columns ``seq``, ``type``, ``payload`` JSON);
     fastest, see :mod:`projections.views.messages`; or
   - implement ``new_batch()`` returning an object with ``add(seq, env)`` (``env`` is the
     envelope as a plain dict) and ``flush(con, replace=False)``; simplest for logic that
     needs Python (e.g. JSON patches); :class:`~projections.tables.KeyedRows` and
     :class:`~projections.tables.AppendedRows` write through Arrow.
2. Append an instance to ``VIEWS`` in :mod:`projections.views`. A heavy view may take a
   writer lane of its own (``lane = 1``, as ``messages`` does).

On its next start the projector creates the new view's tables and replays the whole log
into that view only (the other views skip what they have applied); a changed ``version``
drops and rebuilds that view the same way. ``threadlog projections rebuild --view NAME``
does it on demand. A view must be a function of the events alone (no wall clock), and
events no view handles still advance the checkpoint.

Running it
----------
- ``await run_projection_service(nc, nats_url, ProjectorConfig(db_path=...), stop=ev)``
  (:mod:`projections.service`): projector + query subjects until ``stop`` is set; or
- ``python -m projections --nats-url URL --db FILE``; or, piecewise,
  ``Projector(config, nc, url)`` / ``await projector.run()`` / ``projector.stop()`` and
  ``await serve_queries(nc, QueryService(projector))`` or
  ``register_query_subscribers(broker, QueryService(projector))`` for FastStream.

DuckDB allows one process per file (a running projector blocks even read-only opens), so
operators use ``query.status`` / ``query.sql`` while it runs (:mod:`projections.admin`).
"""

from projections.projector import Projector, ProjectorConfig, run_until_caught_up
from projections.queries import (
    QueryService,
    SqlLimits,
    register_query_subscribers,
    serve_queries,
)
from projections.service import run_projection_service
from projections.view import SqlView, View
from projections.views import VIEWS

__all__ = ["VIEWS", "Projector", "ProjectorConfig", "QueryService", "SqlLimits", "SqlView",
           "View", "register_query_subscribers", "run_projection_service",
           "run_until_caught_up", "serve_queries"]
