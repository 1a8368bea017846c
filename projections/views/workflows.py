"""The ``workflows`` and ``workflow_steps`` views: one row per workflow run and one per
step of its current generation, folded from the run's events
(``events.workflow.<run_id>.>``, see ``events.workflow_events``).

``workflows``: ``status`` is running, suspended, completed, failed or canceled;
``ended_at``/``error`` are set by the outcome and cleared by ``workflow_restarted``;
``parent`` is the parent run of a child run. ``workflow_steps``: ``status`` is
scheduled, running, sleeping, waiting, retrying, completed or failed; ``attempt`` the
latest attempt; ``error`` the last failure (cleared when the step completes). A restart
from step ``n`` removes the rows of steps ``n`` and later (the journal drops them too).

Guarantees: rows are a function of the events only (times are the events'
``occurred_at``), so a rebuild gives the same rows. Each batch is folded in Python and
written with a few set-based statements over Arrow tables.

Failure modes: events of a run whose ``workflow_started`` is not stored patch nothing;
an event of an older generation arriving after a restart (a late child outcome) is
applied, where the journal would ignore it; a run erased by ``WorkflowClient.cleanup``
keeps its rows until the views are rebuilt.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import duckdb
import pyarrow as pa

from projections.tables import Table
from projections.view import Envelope, View

WORKFLOWS = Table(
    "workflows",
    {"run_id": "VARCHAR", "name": "VARCHAR", "version": "BIGINT", "user_id": "VARCHAR",
     "status": "VARCHAR", "parent": "VARCHAR", "started_at": "TIMESTAMPTZ",
     "ended_at": "TIMESTAMPTZ", "error": "JSON", "seq": "BIGINT"},
    key=("run_id",), indexes=(("user_id",),))
WORKFLOW_STEPS = Table(
    "workflow_steps",
    {"run_id": "VARCHAR", "step": "BIGINT", "name": "VARCHAR", "kind": "VARCHAR",
     "attempt": "BIGINT", "status": "VARCHAR", "started_at": "TIMESTAMPTZ",
     "ended_at": "TIMESTAMPTZ", "error": "JSON"},
    key=("run_id", "step"))
_OPENING = {"step_started": "running", "step_scheduled": "scheduled",
            "sleep_scheduled": "sleeping", "event_awaited": "waiting",
            "patch_marked": "completed"}
_OUTCOMES = {"workflow_completed": "completed", "workflow_failed": "failed",
             "workflow_canceled": "canceled"}


def _error(d: dict[str, Any]) -> str | None:
    err = d.get("error")
    return json.dumps(err, sort_keys=True) if err else None


class _Rows:
    """One batch of writes to a keyed table: new rows, and patches whose *present* keys
    are set (``None`` sets NULL), folded in event order."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.new: dict[Any, dict[str, Any]] = {}
        self.patches: dict[Any, dict[str, Any]] = {}

    def insert(self, key: tuple[Any, ...], row: dict[str, Any]) -> None:
        self.patches.pop(key, None)
        self.new[key] = row

    def patch(self, key: tuple[Any, ...], fields: dict[str, Any]) -> None:
        target = self.new.get(key)
        if target is None:
            target = self.patches.setdefault(key, dict(zip(self.table.key, key, strict=True)))
        target.update(fields)

    def drop(self, keep: Any) -> None:
        """Forget the batch's rows whose key ``keep(key)`` refuses."""
        for rows in (self.new, self.patches):
            for key in [k for k in rows if not keep(k)]:
                del rows[key]

    def flush(self, con: duckdb.DuckDBPyConnection, replace: bool) -> None:
        self.table.insert(con, list(self.new.values()), replace=replace)
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for p in self.patches.values():
            groups.setdefault(tuple(sorted(p)), []).append(p)
        for cols, patches in groups.items():
            names = [*self.table.key, *(c for c in cols if c not in self.table.key)]
            src = pa.Table.from_arrays(
                [pa.array([p.get(c) for p in patches],
                          type=pa.int64() if self.table.columns[c] == "BIGINT" else pa.string())
                 for c in names], names=names)
            con.register("_wf_patch", src)
            try:
                sets = ", ".join(f'"{c}" = CAST(p."{c}" AS {self.table.columns[c]})'
                                 for c in cols if c not in self.table.key)
                where = " AND ".join(f't."{k}" = p."{k}"' for k in self.table.key)
                con.execute(f'UPDATE "{self.table.name}" AS t SET {sets} '
                            f"FROM _wf_patch AS p WHERE {where}")
            finally:
                con.unregister("_wf_patch")


class WorkflowsBatch:
    """Folds a batch for one of the two views (``table``: which one it writes)."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.runs = _Rows(WORKFLOWS)
        self.steps = _Rows(WORKFLOW_STEPS)
        self.restarts: list[tuple[str, int]] = []

    def add(self, seq: int, env: Envelope) -> None:
        t, d, at, run = env["type"], env["data"], env["occurred_at"], env["aggregate_id"]
        if t == "workflow_started":
            self.runs.insert((run,), {
                "run_id": run, "name": d["name"], "version": d.get("version", 1),
                "user_id": d.get("user_id"), "status": "running",
                "parent": d.get("parent_run_id"), "started_at": at, "ended_at": None,
                "error": None, "seq": seq})
        elif t in _OUTCOMES:
            self.runs.patch((run,), {"status": _OUTCOMES[t], "ended_at": at, "error": _error(d),
                                  "seq": seq})
        elif t == "workflow_restarted":
            self.runs.patch((run,), {"status": "running", "ended_at": None, "error": None,
                                  "seq": seq})
            first = int(d.get("from_step", 1))
            self.steps.drop(lambda k: not (k[0] == run and k[1] >= first))
            self.restarts.append((run, first))
        elif t == "run_suspended":
            self.runs.patch((run,), {"status": "suspended", "seq": seq})
        elif t == "child_completed":
            done = d.get("status") == "completed"
            self.steps.patch((run, int(d["step_no"])), {
                "status": "completed" if done else "failed", "ended_at": at,
                "error": None if done else (_error(d) or json.dumps(
                    {"code": "child_canceled", "message": "child run canceled"}))})
        elif t in _OPENING or t in ("step_completed", "step_failed"):
            self.runs.patch((run,), {"status": "running", "seq": seq})
            self._step(t, d, at, run)

    def _step(self, t: str, d: dict[str, Any], at: str, run: str) -> None:
        key = (run, int(d["step_no"]))
        if t in _OPENING:
            fields: dict[str, Any] = {"status": _OPENING[t]}
            if t == "step_started":
                fields["attempt"] = d.get("attempt", 1)
            if key in self.steps.new or key in self.steps.patches:
                self.steps.patch(key, fields)
            else:  # first event of the step, or a later attempt of a stored one
                self.steps.insert(key, {
                    "run_id": run, "step": key[1], "name": d["name"], "kind": d["kind"],
                    "attempt": d.get("attempt", 1), "status": _OPENING[t],
                    "started_at": at, "ended_at": at if t == "patch_marked" else None,
                    "error": None, "_upsert": True})
        elif t == "step_completed":
            self.steps.patch(key, {"status": "completed", "attempt": d.get("attempt", 1),
                                   "ended_at": at, "error": None})
        else:
            final = not d.get("will_retry")
            self.steps.patch(key, {"status": "failed" if final else "retrying",
                                   "attempt": d.get("attempt", 1), "error": _error(d),
                                   "ended_at": at if final else None})

    def flush(self, con: duckdb.DuckDBPyConnection, *, replace: bool = False) -> None:
        if self.table is WORKFLOWS:
            self.runs.flush(con, replace)
            return
        for run, first in self.restarts:
            con.execute("DELETE FROM workflow_steps WHERE run_id = ? AND step >= ?",
                        [run, first])
        upserts = [k for k, r in self.steps.new.items() if r.pop("_upsert", False)]
        stored = _stored_steps(con, upserts)
        for key in stored:  # a later attempt of a step stored earlier: keep its first time
            row = self.steps.new.pop(key)
            self.steps.patches[key] = {k: v for k, v in row.items()
                                       if k not in ("name", "kind", "started_at")}
        self.steps.flush(con, replace)


def _stored_steps(con: duckdb.DuckDBPyConnection, keys: list[tuple[str, int]]
                  ) -> set[tuple[str, int]]:
    if not keys:
        return set()
    rows = con.execute(
        "SELECT w.run_id, w.step FROM workflow_steps w JOIN (SELECT unnest($1::VARCHAR[]) "
        "AS r, unnest($2::BIGINT[]) AS s) k ON w.run_id = k.r AND w.step = k.s",
        [[k[0] for k in keys], [k[1] for k in keys]]).fetchall()
    return {(str(r), int(s)) for r, s in rows}


_STEP_EVENTS = frozenset({"workflow_restarted", "step_completed", "step_failed",
                          "child_completed", *_OPENING})


class WorkflowsView(View):
    name: ClassVar[str] = "workflows"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[Table, ...]] = (WORKFLOWS,)
    handles: ClassVar[frozenset[str]] = frozenset(
        {"workflow_started", "run_suspended", *_STEP_EVENTS, *_OUTCOMES})

    def new_batch(self) -> WorkflowsBatch:
        return WorkflowsBatch(WORKFLOWS)


class WorkflowStepsView(View):
    name: ClassVar[str] = "workflow_steps"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[Table, ...]] = (WORKFLOW_STEPS,)
    handles: ClassVar[frozenset[str]] = _STEP_EVENTS

    def new_batch(self) -> WorkflowsBatch:
        return WorkflowsBatch(WORKFLOW_STEPS)
