"""The projector: the one process that owns the DuckDB file and applies the log to views.

Guarantees
- Exactly-once effects (invariant 5): each batch of events is applied to each view in a
  DuckDB transaction that also records that view's last stream sequence applied
  (``_projection_views.seq``); views of different writer lanes (``ProjectorConfig.lanes``)
  apply in separate transactions, in parallel, and commit together (each lane, its
  statements done, waits for the others' outcome: all commit, or none when one failed).
  On start the feed resumes at the smallest view checkpoint + 1, and each view ignores
  events at or below its own. Killing the process at any moment (SIGKILL included) and
  restarting yields the tables of a clean rebuild.
- Order: events are applied in stream order (an ordered consumer, :mod:`projections.feed`).
- Batching: a batch is everything the feed has buffered, up to ``batch_max`` events
  (1000) when live and up to ``catchup_batch_max`` (30,000) while a backlog waits in the
  stream (see ``ProjectorConfig``). While one batch is written (in the writer lanes'
  threads; DuckDB releases the GIL) the next is prepared, so a busy projector makes big batches
  and an idle one applies a single event within milliseconds.
- Views are independent: a new view, a view whose version changed, or a view named in
  ``reset`` is dropped, recreated and rebuilt from the log while the others only skip.
- Events no view handles are skipped but still advance the checkpoint.
- Poison never stops it (invariant 11). An event that cannot be decoded (unknown type,
  invalid UTF-8, not a JSON object with an object ``data``: the screen of
  :mod:`projections.screen`, free on a clean batch) or applied (a view fails on its
  data: a DuckDB data/conversion/malformed-JSON error or a Python ``KeyError``,
  ``TypeError``...) is rejected: logged at once (``logging.error`` with its seq and the
  error), recorded in the ``rejected_events`` view (same transaction as that view's
  checkpoint), counted in :meth:`status`, and skipped by every view; the rest of its
  batch is applied. Apply failures are isolated by bisection of the failed batch (each
  trial applied in every lane and rolled back; only on a failure, so a clean batch pays
  nothing), which finds the events that fail on their own. Rejections are a function
  of the event alone, so a rebuild rejects the same events the same way, and recorded
  rejections are skipped by a view rebuilt alone. Cost on a clean log: the screen's two
  Arrow kernels per batch, and the lanes' commits waiting for each other (paired
  rebuild benchmark: see the issue 10 note).
- Deletion reaches the disk (invariant 8). When a ``thread_deleted`` removed stored rows,
  the file is compacted into a new file that replaces it (:mod:`projections.erasure`:
  the only approach measured to remove the bytes), debounced by
  ``erasure_delay_s``, never while catching up. ``status()`` reports
  ``erasure_pending_seq``/``erased_seq``; :meth:`Projector.wait_erased` waits for it.
  Queries (:meth:`Projector.reading`) wait during the swap (~25 ms per MB of file).

- Never silent (issue 12; :meth:`health`, ``status()["projector"]``): the stream is checked
  against the checkpoint at every feed start, consumer reset and every
  ``stream_check_s`` (:mod:`projections.recovery`): a lost tail, a recreated
  stream or events removed before being projected reset every view (one WARNING line
  saying what was found; state ``rebuilding``) and the log is replayed, instead of new
  events being skipped. Reads waiting for ``min_seq`` wait for the rebuild.

Failure modes
- A lost NATS connection: the feed is restarted from the checkpoint after a short backoff
  (``run`` keeps going until :meth:`stop`).
- A payload missing a view's key fields yields no row (it decodes, so it is not poison).
- A write or I/O error (disk full, a read-only or vanished file, a database DuckDB
  invalidated after a failed write: ``recovery.IO_ERRORS``) is logged at once (ERROR, the
  original error), shown by :meth:`health` (``retrying``, ``last_error``, ``since``), and
  retried on a reopened file with backoff (``retry_min_s`` doubling to ``retry_max_s``);
  nothing of the failed batch is committed, and the first batch that commits logs
  "resumed" and returns to ``running``. A commit's failure is noticed at once, not at
  the next event.
- A damaged file (not a DuckDB database, corrupt) is moved aside
  (``<name>.damaged-<timestamp>``, ERROR line) and rebuilt from the log. A file that
  cannot be opened (read-only, permissions, another process's lock) leaves the projector
  ``unavailable`` (:meth:`try_open` and ``run`` do not raise; reads raise
  :class:`Unavailable` with the reason) and it is retried with backoff.
- Any other error that is not about an event's data (memory, a SQL bug) stops ``run``
  with the exception (fail loudly), as does a batch that fails while no single event
  fails alone.
- A key conflict (the same message id saved twice in different batches) re-applies the
  batch with ``INSERT OR REPLACE``: the later save wins.
- A failed compaction is logged and retried every 30 s; the old file stays intact (the
  copy replaces it by an atomic rename, a leftover copy is removed on open) and the
  pending erasure, recorded in ``_projection_meta`` with the deletion, survives a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError

from events.connection import NatsEndpoint
from events.errors import Timeout, Unavailable
from projections import erasure, recovery, state
from projections.batch import Batch
from projections.feed import Item, OrderedFeed
from projections.health import ProjectorHealth, State, error_text, without_paths
from projections.prepare import (  # noqa: F401  (re-exported for tests)
    EVENTS,
    Prepared,
    _without_content_of_deleted_threads,
    prepare,
)
from projections.recovery import IO_ERRORS, AppliedMark, StreamChanged
from projections.screen import Rejection
from projections.view import SqlView, View, ViewBatch
from projections.views import VIEWS

log = logging.getLogger(__name__)
_ERASE_RETRY_S = 30.0
IDLE_STORE_EVERY = 10_000
"""Events a view with nothing to write may go without storing its checkpoint."""
_DATA_ERRORS = (duckdb.DataError, duckdb.IntegrityError, duckdb.InvalidInputException,
                KeyError, TypeError, ValueError, AttributeError, IndexError)
"""Errors an event's data can cause in a view (not I/O, memory or SQL bugs): a batch
failing with one of these is searched for poison events."""

Progress = Callable[[int, int, int], None]
"""``progress(checkpoint, events_in_batch, events_left_in_stream)`` after each batch."""


def open_database(path: str | Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the projections file with external access disabled (no file reads, ATTACH,
    COPY, INSTALL) and extension autoloading off, so read-only SQL stays inside it."""
    return duckdb.connect(str(path), read_only=read_only, config={
        "enable_external_access": False,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    })


@dataclass
class ProjectorConfig:
    db_path: Path
    stream: str = "EVENTS"
    batch_max: int = 1000
    """Events per transaction when the projector is live (caught up)."""
    catchup_batch_max: int = 30_000
    """Events per transaction while more than ``batch_max`` events wait in the stream
    (catch-up, rebuild): each statement of a view costs a few ms whatever its row count,
    so bigger batches are what makes a rebuild fast. The feed buffers up to this many
    events (at least 20,000), so memory grows with it (1M-event rebuild: 20,000 -> 370 MB
    peak RSS, 30,000 -> 403 MB, 40,000 -> 426 MB). Set equal to ``batch_max`` to cap
    every transaction at ``batch_max``."""
    lanes: int = 2
    """Writer lanes: views are spread over this many writer threads (``View.lane`` modulo
    ``lanes``), each applying its views' share of a batch in its own DuckDB transaction
    on its own connection, in parallel (DuckDB releases the GIL). 1: one transaction for
    every view."""
    duckdb_threads: int | None = None
    """DuckDB worker threads (None: DuckDB's default, one per core)."""
    wal_checkpoint_mb: int = 16
    """The WAL is folded into the file when it reaches this size (DuckDB's default 16 MB).
    Rows committed since the last checkpoint stay in memory, so this bounds the
    projector's memory; a crash replays at most this much WAL on the next open. DuckDB
    skips its own automatic checkpoint while another transaction is open (the other
    writer lane, a query), so the projector also checkpoints between batches, when no
    lane is writing. The file is also checkpointed when a rebuild ends."""
    gil_switch_interval_s: float | None = 0.0005
    """While the projector is open, ``sys.setswitchinterval`` (Python's default 0.005):
    after each DuckDB statement a writer lane needs the GIL back, and the event loop
    (the feed, building batches) holds it for up to this long. 0.5 ms measured +8-13 % on
    the 1M-event rebuild (interleaved runs). The previous value is restored on close;
    ``None`` leaves the interpreter's setting alone."""
    min_seq_timeout_s: float = 5.0
    """The longest a query waits for ``min_seq`` (queries may ask for less)."""
    reset: Sequence[str] = ()
    """Views to rebuild from the log on open (``["*"]``: all)."""
    views: Sequence[View] = field(default_factory=lambda: list(VIEWS))
    erasure_delay_s: float = 0.2
    """Debounce of erasure on disk: the file is compacted (:mod:`projections.erasure`)
    this long after the first ``thread_deleted`` that removed stored rows, once for every
    deletion applied by then; never while catching up (then once caught up).
    ``status()`` reports ``erasure_pending_seq`` / ``erased_seq``;
    :meth:`Projector.wait_erased` waits for a tombstone's erasure."""
    reader_drain_s: float = 30.0
    """How long a compaction waits for running queries to finish (new ones wait for it);
    after that it is put off to the next batch."""
    stream_check_s: float = 5.0
    """The stream is checked against the checkpoint this often, idle or busy (one
    stream info and one message get: :func:`projections.recovery.check_stream`), and at
    every feed start and consumer reset."""
    retry_min_s: float = 0.1
    retry_max_s: float = 10.0
    """Backoff bounds of the retries after a write/I/O error or a file that cannot be
    opened (doubling from ``retry_min_s``)."""


class Projector:
    """Owns the DuckDB file; ``await run()`` applies the log until ``stop()``."""

    def __init__(self, config: ProjectorConfig, nc: NATS, nats_url: str | NatsEndpoint
                 ) -> None:
        self.config = config
        self.nc = nc
        self.nats_url = nats_url
        self.views = list(config.views)
        self.con: duckdb.DuckDBPyConnection | None = None
        self._floors: dict[str, int] = {}
        self._stored: dict[str, int] = {}
        """Each view's checkpoint as stored in the database (``_floors`` may be ahead
        for views with nothing to write, see ``_idle``)."""
        self._checkpoint = 0
        self._cond = asyncio.Condition()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="projector-writer")
        self._lanes: list[tuple[ThreadPoolExecutor, duckdb.DuckDBPyConnection]] = []
        self._feed: OrderedFeed | None = None
        self._stopping = False
        self._stopped = asyncio.Event()
        self._wal = Path(f"{config.db_path}.wal")
        self._catching_up = False
        self._vacuum_off = False
        self._switch_interval: float | None = None
        self._wake = asyncio.Event()
        self._rejected: dict[int, Rejection] = {}
        """Every rejection known (recorded in ``rejected_events`` or found in this run):
        excluded from every view, so a view rebuilt alone skips them too."""
        self._gate = threading.Condition()
        self._readers = 0
        self._compacting = False
        self._erasure_pending: int | None = None
        self._erasure_due = 0.0
        self._erased_seq = 0
        self.progress: Progress | None = None
        self.applied = 0
        self._state: State = "starting"
        self._since: datetime | None = datetime.now(UTC)
        self._last_error: str | None = None
        self._stream_last_seq: int | None = None
        self._stream_id: str | None = None
        self._mark: AppliedMark | None = None
        self._last_check = 0.0
        self._retry_s = config.retry_min_s
        self._unopenable = False
        """The last :meth:`open` failed to open the file at all (``unavailable``), not
        later, writing to it (``retrying``)."""

    # ----------------------------------------------------------------- state
    @property
    def checkpoint(self) -> int:
        """Last stream sequence applied to every view (committed)."""
        return self._checkpoint

    def health(self) -> ProjectorHealth:
        """State, checkpoint, lag and the last error (:mod:`projections.health`); cheap
        (no I/O): ``stream_last_seq`` is the last one seen by the feed or a check."""
        last = self._stream_last_seq
        if last is not None and last < self._checkpoint and self._state != "rebuilding":
            last = None  # stale: seen before a rebuild reset the checkpoint
        return ProjectorHealth(
            state=self._state, checkpoint=self._checkpoint, stream_last_seq=last,
            lag=None if last is None else max(0, last - self._checkpoint),
            last_error=self._last_error, since=self._since)

    def _set_state(self, new: State, error: str | None = None) -> None:
        """Enter ``new`` (``since`` moves only when the state changes); ``error`` is
        kept as ``last_error`` (cleared when entering ``running``)."""
        if new != self._state:
            self._state = new
            self._since = datetime.now(UTC)
        if error is not None:
            self._last_error = error
        elif new == "running":
            self._last_error = None

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor for one reader (one per request or thread). A compaction
        (:mod:`projections.erasure`) reopens the file: prefer :meth:`reading`, which it
        waits for; a bare cursor held across one fails afterwards."""
        if self.con is None:
            raise self._unavailable()
        return self.con.cursor()

    def _unavailable(self) -> Unavailable:
        """What a read gets while the file is not open: the state and the reason (file
        paths cut: users see it)."""
        h = self.health()
        reason = without_paths(h.last_error or "the projections file is not open")
        return Unavailable(f"projections are unavailable ({h.state}): {reason}",
                           details={"state": h.state, "reason": reason,
                                    "since": None if h.since is None else h.since.isoformat(),
                                    "checkpoint": h.checkpoint})

    @contextlib.contextmanager
    def reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor for one read (in a worker thread): waits while the file is being
        compacted, and a compaction waits for it to end."""
        with self._gate:
            self._gate.wait_for(lambda: not self._compacting)
            cur = self.cursor()
            self._readers += 1
        try:
            try:
                yield cur
            finally:
                cur.close()
        finally:
            with self._gate:
                self._readers -= 1
                self._gate.notify_all()

    async def open(self) -> None:
        """Open the file and bring the views to their registered versions.

        A file DuckDB rejects as damaged is moved aside (``<name>.damaged-<timestamp>``,
        logged) and the views rebuilt from the log into a new one. A stream that no
        longer matches the checkpoint (:mod:`projections.recovery`) resets every view
        (logged). Any other failure to open (read-only, permissions, a lock) raises;
        :meth:`run` then reports ``unavailable`` and retries."""
        if self.con is not None:
            return
        facts = await recovery.stream_facts(self.nc, self.config.stream)
        self._stream_last_seq = facts.last_seq
        stream_id = facts.identity
        if self.config.gil_switch_interval_s is not None and self._switch_interval is None:
            self._switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(self.config.gil_switch_interval_s)
        path = Path(self.config.db_path)
        self._unopenable = True  # until connected: a failure means the file cannot be opened
        erasure.remove_scratch(path)
        try:
            self._connect()
        except duckdb.Error as exc:
            if not recovery.is_damaged(exc):
                raise
            moved = recovery.move_aside(path)
            log.error("projections file %s is damaged (%s): moved aside to %s; rebuilding "
                      "every view from the log", path, error_text(exc), moved)
            self._connect()
        self._unopenable = False
        assert self.con is not None
        try:
            known = await self._in_writer(state.recorded_stream_id, self.con)
            reset = ([v.name for v in self.views] if "*" in self.config.reset
                     else list(self.config.reset))
            if known is not None and known != stream_id:
                reason = (f"stream {self.config.stream} was recreated (now {stream_id}, the "
                          f"views were built from {known})")
                log.warning("projector: %s; rebuilding every view from the log", reason)
                self._set_state("rebuilding", reason)
            states = await self._in_writer(state.prepare_views, self.con, self.views,
                                           stream_id=stream_id, reset=reset)
            self._stream_id = stream_id
            self._set_floors({name: st.seq for name, st in states.items()})
            await self._in_writer(self._load_records)
            stored = await self._in_writer(state.read_mark, self.con)
            self._mark = None if stored is None else AppliedMark(*stored)
            try:
                await recovery.check_stream(self.nc, self.config.stream,
                                            checkpoint=self._checkpoint,
                                            recorded_id=stream_id, mark=self._mark)
            except StreamChanged as changed:
                await self._rebuild_all(changed.reason)
        except BaseException:
            await self._disconnect()
            raise

    async def try_open(self) -> bool:
        """:meth:`open`, but a file that cannot be opened is logged and reported
        (``unavailable`` in :meth:`health`, queries answer ``unavailable``) instead of
        raised: :meth:`run` keeps trying. Returns whether the file is open."""
        try:
            await self.open()
            return True
        except (NatsError, Unavailable, ConnectionError) as exc:  # before OSError
            log.warning("projector cannot read stream %s yet (%s); retrying",
                        self.config.stream, error_text(exc))
            self._set_state(self._state, error_text(exc))
            return False
        except IO_ERRORS as exc:
            text = error_text(exc)
            if self._unopenable:
                log.error("projections file %s cannot be opened: %s; queries answer "
                          "unavailable until it can", self.config.db_path, text)
            else:
                log.error("projector cannot write the projections file %s: %s; retrying",
                          self.config.db_path, text)
            self._set_state("unavailable" if self._unopenable else "retrying", text)
            return False

    def _set_floors(self, floors: dict[str, int]) -> None:
        self._floors = dict(floors)
        self._stored = dict(floors)
        self._checkpoint = min(floors.values(), default=0)

    async def _rebuild_all(self, reason: str) -> None:
        """Reset every view (one transaction) to be rebuilt from the log: the stream no
        longer matches the checkpoint (one WARNING line saying why)."""
        assert self.con is not None
        # At once, before any await: no read waiting for min_seq is answered from the
        # views about to be dropped.
        self._set_floors({v.name: 0 for v in self.views})
        self._stream_last_seq = None
        self._set_state("rebuilding", reason)
        log.warning("projector: %s; rebuilding every view from the log", reason)
        stream_id = (await recovery.stream_facts(self.nc, self.config.stream)).identity
        states = await self._in_writer(state.prepare_views, self.con, self.views,
                                       stream_id=stream_id, reset=[v.name for v in self.views])
        self._stream_id = stream_id
        self._rejected.clear()
        self._mark = None
        self._set_floors({name: st.seq for name, st in states.items()})
        await self._notify()

    def _connect(self) -> None:
        """Open the file and the lanes' cursors (writer thread, or ``open``)."""
        self.con = open_database(self.config.db_path)
        self.con.execute(f"SET checkpoint_threshold = '{int(self.config.wal_checkpoint_mb)}MB'")
        if self.config.duckdb_threads:
            self.con.execute(f"SET threads = {int(self.config.duckdb_threads)}")
        old = self._lanes[1:]
        self._lanes = [(self._writer, self.con)] + [
            (old[i - 1][0] if i - 1 < len(old) else
             ThreadPoolExecutor(1, thread_name_prefix=f"projector-lane{i}"), self.con.cursor())
            for i in range(1, max(1, self.config.lanes))]
        self._vacuum_off = False

    def _load_records(self) -> None:
        """Rejections recorded by earlier runs, and an erasure a crash interrupted."""
        assert self.con is not None
        cur = self.con.cursor()
        try:
            if any(v.takes_rejections for v in self.views):
                for row in cur.execute("SELECT seq, subject, type, error, raw_prefix, raw_bytes "
                                       "FROM rejected_events").fetchall():
                    seq, subject, typ, error, prefix, size = row
                    self._rejected[int(seq)] = Rejection(int(seq), subject, typ, error, prefix,
                                                         int(size))
            (pending,) = cur.execute(
                "SELECT max(CAST(value AS BIGINT)) FROM _projection_meta WHERE key LIKE "
                f"'{erasure.PENDING_KEY}%'").fetchone() or (None,)
            if pending is not None:
                self._erasure_pending = int(pending)
                self._erasure_due = time.monotonic()
        finally:
            cur.close()

    async def close(self) -> None:
        await self._disconnect(shutdown=True)
        self._writer.shutdown(wait=True)
        if self._switch_interval is not None:
            sys.setswitchinterval(self._switch_interval)
            self._switch_interval = None

    async def _disconnect(self, *, shutdown: bool = False) -> None:
        loop = asyncio.get_running_loop()
        lanes = self._lanes
        if shutdown:
            self._lanes = []
        for executor, cur in lanes[1:]:
            try:
                await loop.run_in_executor(executor, cur.close)
            except duckdb.Error as exc:
                log.debug("closing a writer lane: %s", exc)
            if shutdown:
                executor.shutdown(wait=True)
        if self.con is not None:
            con, self.con = self.con, None
            try:
                await self._in_writer(con.close)
            except duckdb.Error as exc:  # an invalidated database (after a write failure)
                log.debug("closing the projections file: %s", exc)

    # ----------------------------------------------------------------- waiting
    async def wait_for(self, seq: int, timeout: float | None = None) -> int:
        """Wait until the checkpoint reaches ``seq``; return the checkpoint.

        Event-driven (woken by each commit). Raises :class:`Timeout` after ``timeout``
        seconds (default ``min_seq_timeout_s``) with how far behind the projection is.
        """
        if self._checkpoint >= seq:
            return self._checkpoint
        if self.con is None and self._state == "unavailable":
            raise self._unavailable()
        await self._wait(lambda: self._checkpoint >= seq, timeout, seq, "projection")
        return self._checkpoint

    async def wait_erased(self, seq: int, timeout: float | None = None) -> None:
        """Wait until every deletion up to ``seq`` (a ``thread_deleted``'s sequence) is
        applied and its bytes are gone from the file and its WAL (:mod:`projections.erasure`).
        Raises :class:`Timeout` like :meth:`wait_for`."""
        def done() -> bool:
            return self._checkpoint >= seq and (self._erasure_pending is None
                                                or self._erased_seq >= seq)
        if not done():
            await self._wait(done, timeout, seq, "erasure")

    async def _wait(self, pred: Callable[[], bool], timeout: float | None, seq: int,
                    what: str) -> None:
        limit = self.config.min_seq_timeout_s if timeout is None else timeout
        try:
            async with self._cond:
                await asyncio.wait_for(self._cond.wait_for(pred), limit)
        except TimeoutError:
            cp = self._checkpoint
            raise Timeout(f"{what} is at sequence {cp}, {seq - cp} behind min_seq {seq} "
                          f"after {limit:g}s", details={"checkpoint": cp, "min_seq": seq,
                                                        "behind": seq - cp,
                                                        "erasure_pending_seq":
                                                            self._erasure_pending,
                                                        "waited_s": limit}) from None

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    # ----------------------------------------------------------------- running
    def stop(self) -> None:
        """Ask ``run`` to return after the batch in progress (safe from any task)."""
        self._stopping = True
        self._wake.set()

    async def run(self, *, until_seq: int | None = None) -> None:
        """Apply the log until :meth:`stop` (or until the checkpoint reaches ``until_seq``).

        Reconnects the feed after a lost connection, resuming from the checkpoint.
        """
        self._stopping = False
        backoff = 0.1
        rebuild: str | None = None
        """Why every view must be rebuilt, until done: a rebuild that fails (NATS
        unreachable, a write error) is retried like a batch, not the end of the projector."""
        try:
            while not self._stopping:
                if until_seq is not None and self._checkpoint >= until_seq:
                    break
                try:
                    await self.open()
                    if rebuild is not None:
                        await self._rebuild_all(rebuild)
                        rebuild = None
                    await self._consume(until_seq)
                    backoff = 0.1
                except StreamChanged as changed:
                    rebuild = changed.reason
                except (Unavailable, NatsError, TimeoutError, ConnectionError) as exc:
                    if self._stopping:
                        break
                    log.warning("projector feed unavailable (%s); retrying in %.1fs", exc,
                                backoff)
                    await self._pause(backoff)
                    backoff = min(backoff * 2, 5.0)
                except IO_ERRORS as exc:
                    if self._stopping:
                        break
                    await self._failed(exc, opening=self.con is None and self._unopenable)
            if self._erasure_pending is not None and not self._stopping and self.con:
                await self._erase()
        except Exception as exc:
            log.error("projector stopped at checkpoint %d: %s", self._checkpoint,
                      error_text(exc), exc_info=True)
            self._set_state("stopped", error_text(exc))
            raise
        finally:
            self._set_state("stopped")

    async def _failed(self, exc: BaseException, *, opening: bool) -> None:
        """A write/I/O error, or a file that cannot be opened: logged at once (ERROR, the
        original error), reported by :meth:`health` (``retrying``, or ``unavailable`` when
        the file cannot be opened), retried after a backoff (doubling, bounded by
        ``retry_max_s``) on a freshly opened file."""
        text = error_text(exc)
        wait = self._retry_s
        self._retry_s = min(wait * 2, self.config.retry_max_s)
        if opening:
            log.error("projections file %s cannot be opened: %s; queries answer unavailable, "
                      "retrying in %.1fs", self.config.db_path, text, wait)
        else:
            log.error("projector cannot write the projections file %s at checkpoint %d: %s; "
                      "retrying in %.1fs", self.config.db_path, self._checkpoint, text, wait)
        self._set_state("unavailable" if opening else "retrying", text)
        if self.con is not None:  # reopened (its checkpoints re-read) by the retry
            drained = await self._in_writer(self._close_gate)  # running reads end first
            try:
                if not drained:
                    log.warning("closing the projections file with queries still running "
                                "after %.0fs", self.config.reader_drain_s)
                await self._disconnect()
            finally:
                with self._gate:
                    self._compacting = False
                    self._gate.notify_all()
        await self._pause(wait)

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` or until :meth:`stop`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        if not self._stopping:
            self._wake.clear()

    def _progressed(self, caught_up: bool) -> None:
        """A batch committed (or the feed is idle and caught up): leave ``starting`` /
        ``retrying`` (logged), and ``rebuilding`` once caught up."""
        if self._state in ("retrying", "unavailable"):
            log.warning("projector resumed at checkpoint %d after: %s", self._checkpoint,
                        self._last_error)
        self._retry_s = self.config.retry_min_s
        if self._state != "rebuilding" or caught_up:
            if self._state == "rebuilding":
                log.warning("projector rebuilt every view up to sequence %d",
                            self._checkpoint)
            self._set_state("running")

    async def _check_stream(self) -> None:
        """Raise :class:`StreamChanged` if the stream contradicts the checkpoint."""
        self._last_check = time.monotonic()
        facts = await recovery.check_stream(self.nc, self.config.stream,
                                            checkpoint=self._checkpoint,
                                            recorded_id=self._stream_id, mark=self._mark)
        self._stream_last_seq = facts.last_seq

    async def _consume(self, until_seq: int | None) -> None:
        await self._check_stream()
        feed = OrderedFeed(self.nats_url, self.nc, self.config.stream,
                           high_water=max(20_000, self.config.catchup_batch_max),
                           before_reset=self._check_stream)
        self._feed = feed
        inflight: asyncio.Future[None] | None = None
        try:
            await feed.start(self._checkpoint + 1)
            while not self._stopping:
                if until_seq is not None and self._checkpoint >= until_seq:
                    break
                if self._erasure_due_now():
                    if inflight is not None:
                        await inflight
                        inflight = None
                    await self._erase()
                if inflight is not None and inflight.done():
                    await inflight  # a failed commit raises here, not at the next event
                    inflight = None
                if time.monotonic() - self._last_check >= self.config.stream_check_s:
                    await self._check_stream()  # also under load (idle: in _take)
                items = await self._take(feed, inflight)
                if not items:
                    continue
                prepared = await self._prepare(items)
                last = prepared.last_seq
                if inflight is not None:
                    await inflight
                inflight = asyncio.ensure_future(self._commit(prepared, feed))
                if until_seq is not None and (last >= until_seq or
                                              (feed.pending == 0 and not feed.buffered)):
                    break
            if inflight is not None:
                await inflight
        finally:
            if inflight is not None and not inflight.done():
                with contextlib.suppress(Exception):
                    await inflight
            self._feed = None
            await feed.close()

    async def _take(self, feed: OrderedFeed, inflight: asyncio.Future[None] | None
                    ) -> list[Item]:
        """The next batch from the feed; [] when woken (stop, erasure due, the commit in
        flight done: its failure must not wait for the next event) or at a stream check."""
        cfg = self.config
        backlog = max(0, feed.pending) + feed.buffered
        self._catching_up = backlog > cfg.batch_max
        limit = cfg.catchup_batch_max if self._catching_up else cfg.batch_max
        take = asyncio.ensure_future(feed.take(max(limit, cfg.batch_max)))
        wake = asyncio.ensure_future(self._wake.wait())
        due = None
        if self._erasure_pending is not None and not self._catching_up:
            due = max(0.0, self._erasure_due - time.monotonic())
        check_in = max(0.0, self._last_check + cfg.stream_check_s - time.monotonic())
        try:
            waits: set[asyncio.Future[Any]] = {take, wake}
            if inflight is not None:
                waits.add(inflight)
            await asyncio.wait(waits, timeout=check_in if due is None else
                               min(due, check_in), return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
        if take.done():
            return take.result()
        take.cancel()
        try:  # the take may have finished as it was cancelled (asyncio.wait_for in 3.11
            got = await take  # can swallow a cancellation whose wait had completed): then
        except asyncio.CancelledError:  # it popped its items, which must not be lost
            got = []
        if got:
            return got
        if self._wake.is_set():
            self._wake.clear()
        if inflight is not None and inflight.done():
            return []  # the caller collects its outcome
        if inflight is None and feed.buffered == 0 and feed.pending <= 0:
            self._progressed(caught_up=True)  # idle and caught up
        if time.monotonic() - self._last_check >= cfg.stream_check_s:
            await self._check_stream()
        return []

    async def _prepare(self, items: list[Item]) -> Prepared:
        """The batch screened and shared out to the views (:mod:`projections.prepare`)."""
        return await prepare(items, self.views, self._floors, self._rejected,
                             self._stored_at)

    async def _stored_at(self, seq: int) -> str | None:
        """When the stream stored event ``seq`` (ISO 8601), None if it is gone."""
        try:
            msg = await self.nc.jetstream().get_msg(self.config.stream, seq)
        except Exception:
            return None
        return str(msg.time) if msg.time else None

    async def _commit(self, prepared: Prepared, feed: OrderedFeed) -> None:
        """Apply ``prepared`` to every lane; a batch failing on an event's data is searched
        (bisection) for the events that fail on their own, which are rejected, and the
        rest applied."""
        if self._catching_up != self._vacuum_off:
            await self._in_writer(self._set_vacuum, not self._catching_up)
        _log_rejections(prepared.new_rejections)
        try:
            await self._write(prepared)
        except _DataError as exc:
            poison = await self._isolate(prepared.items)
            if not poison:
                log.error("batch up to seq %d failed and no single event fails alone: %s",
                          prepared.last_seq, exc.error)
                raise exc.error from None
            _log_rejections(poison)
            for r in poison:
                self._rejected[r.seq] = r
            try:
                await self._write(await self._prepare(prepared.raw))
            except _DataError as again:
                raise again.error from None
        if self._wal.exists() and self._wal.stat().st_size >= self.config.wal_checkpoint_mb << 20:
            await self._in_writer(self._fold_wal)
        raw = prepared.raw or prepared.items
        if raw and raw[-1][0] == prepared.last_seq:
            self._mark = AppliedMark.of(*raw[-1])
        left = max(0, feed.pending) + feed.buffered
        self._stream_last_seq = max(self._stream_last_seq or 0, prepared.last_seq + left)
        self._progressed(caught_up=left == 0)
        self.applied += prepared.count
        if self.progress is not None:
            self.progress(self._checkpoint, prepared.count, max(0, feed.pending))

    async def _write(self, prepared: Prepared) -> None:
        """Every lane's share in its own transaction; all commit, or (an event's data
        failing a view) none does and :class:`_DataError` is raised."""
        lanes: dict[int, list[tuple[View, Batch | ViewBatch | None]]] = {}
        for view, batch in prepared.batches:
            lanes.setdefault(view.lane % len(self._lanes), []).append((view, batch))
        last = prepared.last_seq
        idle = [share for i, share in lanes.items() if self._idle(share, last)]
        lanes = {i: share for i, share in lanes.items() if not self._idle(share, last)}
        barrier = _AllOrNone(len(lanes))
        raw = prepared.raw or prepared.items
        mark = AppliedMark.of(*raw[-1]) if raw and raw[-1][0] == last else None

        def in_lane(i: int, con: duckdb.DuckDBPyConnection,
                    share: list[tuple[View, Batch | ViewBatch | None]]) -> bool:
            key = f"{erasure.PENDING_KEY}:{i}" if prepared.tombstones else None
            try:
                erased = self._begin(con, share, prepared, erasure_key=key, mark=mark)
            except BaseException:
                barrier.vote(False)
                raise
            self._end(con, commit=barrier.vote(True))
            return erased

        results = await self._in_lanes(lanes, in_lane)
        failed = [r for r in results.values() if isinstance(r, BaseException)]
        if not failed:  # nothing to write: the checkpoint moves in memory
            for view, _ in (pair for share in idle for pair in share):
                self._floors[view.name] = max(self._floors.get(view.name, 0), last)
        erased = False
        for i, result in results.items():
            if not barrier.failed and not isinstance(result, BaseException):  # committed
                erased = erased or bool(result)
                for view, _ in lanes[i]:
                    self._floors[view.name] = max(self._floors.get(view.name, 0), last)
                    self._stored[view.name] = self._floors[view.name]
        if erased:
            if self._erasure_pending is None:
                self._erasure_due = time.monotonic() + self.config.erasure_delay_s
                self._wake.set()  # the feed's wait gets a deadline: the erasure's
            self._erasure_pending = max(self._erasure_pending or 0, last)
        self._checkpoint = min(self._floors.values(), default=last)
        await self._notify()
        for r in failed:
            if isinstance(r, BaseException):
                if isinstance(r, _DATA_ERRORS):
                    raise _DataError(r)
                raise r

    async def _in_lanes(self, lanes: dict[int, list[tuple[View, Batch | ViewBatch | None]]],
                        fn: Callable[[int, duckdb.DuckDBPyConnection,
                                      list[tuple[View, Batch | ViewBatch | None]]], Any]
                        ) -> dict[int, Any]:
        loop = asyncio.get_running_loop()
        keys = list(lanes)
        results = await asyncio.gather(*(
            loop.run_in_executor(self._lanes[i][0], fn, i, self._lanes[i][1], lanes[i])
            for i in keys), return_exceptions=True)
        return dict(zip(keys, results, strict=True))

    async def _isolate(self, items: list[Item]) -> list[Rejection]:
        """The events of ``items`` that fail a view on their own (bisection: each trial
        applies a part in every lane and rolls back)."""
        found: list[Rejection] = []

        async def trial(part: list[Item]) -> BaseException | None:
            p = await self._prepare(part)
            lanes: dict[int, list[tuple[View, Batch | ViewBatch | None]]] = {}
            for view, batch in p.batches:
                lanes.setdefault(view.lane % len(self._lanes), []).append((view, batch))
            began = await self._in_lanes(lanes, lambda i, con, share: self._begin(
                con, share, p, erasure_key=None))
            await self._in_lanes({i: lanes[i] for i, r in began.items()
                                  if not isinstance(r, BaseException)},
                                 lambda i, con, share: self._end(con, commit=False))
            return next((r for r in began.values() if isinstance(r, _DATA_ERRORS)), None)

        async def search(part: list[Item]) -> None:
            error = await trial(part)
            if error is None:
                return
            if len(part) == 1:
                found.append(Rejection.of(part[0], f"{type(error).__name__}: {error}"))
                return
            mid = len(part) // 2
            await search(part[:mid])
            await search(part[mid:])

        await search(items)
        return found

    def _idle(self, share: list[tuple[View, Batch | ViewBatch | None]], last: int) -> bool:
        """A lane share with no event for any of its views, whose stored checkpoints are
        less than ``IDLE_STORE_EVERY`` events behind: no transaction (a live batch then
        commits only the lanes that write). A restart re-reads at most that many events
        for those views, which skip them again."""
        return all(b is None for _, b in share) and all(
            last - self._stored.get(v.name, 0) < IDLE_STORE_EVERY for v, _ in share)

    def _set_vacuum(self, on: bool) -> None:
        """Checkpoints merge row groups thinned by deletions ("vacuum"): each such merge
        reads the row groups into memory (200 MB at 1M events). Off while catching up
        (the memory bound of a rebuild), back to DuckDB's default once live, where
        checkpoints then reclaim deleted rows (writer thread)."""
        assert self.con is not None
        self.con.execute("RESET GLOBAL max_vacuum_tasks" if on
                         else "SET GLOBAL max_vacuum_tasks = 0")
        self._vacuum_off = not on

    def _fold_wal(self) -> None:
        """CHECKPOINT between batches (writer thread); skipped while a query's transaction
        is open (the next batch tries again)."""
        assert self.con is not None
        try:
            self.con.execute("CHECKPOINT")
        except duckdb.TransactionException as exc:
            log.debug("checkpoint deferred: %s", exc)

    @staticmethod
    def _begin(con: duckdb.DuckDBPyConnection,
               share: list[tuple[View, Batch | ViewBatch | None]], prepared: Prepared,
               erasure_key: str | None, replace: bool = False,
               mark: AppliedMark | None = None) -> bool:
        """Open a transaction on ``con`` (a lane's writer thread) holding the rows of the
        views in ``share`` and their checkpoints (with ``mark``, the batch's last event:
        ``state.advance``); :meth:`_end` commits or rolls it back.
        A key conflict re-applies with replace; any other error rolls back and raises.
        Returns whether a deletion in the batch removed stored rows (then
        ``erasure_key`` is recorded in ``_projection_meta`` in the same transaction)."""
        con.register(EVENTS, prepared.table)
        try:
            con.begin()
            try:
                erasure.take_removed()
                for view, batch in share:
                    if isinstance(batch, Batch):
                        assert isinstance(view, SqlView)
                        view.apply(con, batch, replace=replace)
                    elif batch is not None:
                        batch.flush(con, replace=replace)
                state.advance(con, [v.name for v, _ in share], prepared.last_seq,
                              None if mark is None else (mark.seq, mark.digest))
                erased = erasure.take_removed() > 0 and erasure_key is not None
                if erased:
                    state.write_meta(con, str(erasure_key), str(prepared.last_seq))
                return erased
            except duckdb.ConstraintException:
                con.rollback()
                if replace:
                    raise
                return Projector._begin(con, share, prepared, erasure_key, replace=True,
                                        mark=mark)
            except BaseException:
                con.rollback()
                raise
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.unregister(EVENTS)
            raise

    @staticmethod
    def _end(con: duckdb.DuckDBPyConnection, *, commit: bool) -> None:
        try:
            if commit:
                con.commit()
            else:
                con.rollback()
        finally:
            with contextlib.suppress(duckdb.Error):
                con.unregister(EVENTS)

    # ----------------------------------------------------------------- erasure
    def _erasure_due_now(self) -> bool:
        return (self._erasure_pending is not None and not self._catching_up
                and time.monotonic() >= self._erasure_due)

    async def _erase(self) -> None:
        """Compact the file (:mod:`projections.erasure`) between batches: waits for running
        queries (new ones wait), closes every connection, copies, swaps, reopens."""
        pending, upto = self._erasure_pending, self._checkpoint
        t0 = time.perf_counter()
        drained = await self._in_writer(self._close_gate)
        try:
            if not drained:
                log.warning("erasure put off: queries still running after %.0fs",
                            self.config.reader_drain_s)
                self._erasure_due = time.monotonic() + self.config.erasure_delay_s
                return
            await self._disconnect()
            try:
                await self._in_writer(erasure.compact, Path(self.config.db_path))
            except Exception:
                log.exception("erasure on disk failed (deleted content up to seq %d may "
                              "still be in the file); retrying in %.0fs", upto,
                              _ERASE_RETRY_S)
                self._erasure_due = time.monotonic() + _ERASE_RETRY_S
                return
            finally:
                await self._in_writer(self._connect)
        finally:
            with self._gate:
                self._compacting = False
                self._gate.notify_all()
        if self._erasure_pending == pending:
            self._erasure_pending = None
        self._erased_seq = max(self._erased_seq, upto)
        log.info("erased deleted content on disk up to seq %d in %.0f ms", upto,
                 (time.perf_counter() - t0) * 1e3)
        await self._notify()

    def _close_gate(self) -> bool:
        """Hold new queries back and wait (bounded) for running ones (writer thread)."""
        with self._gate:
            self._compacting = True
            return self._gate.wait_for(lambda: self._readers == 0,
                                       self.config.reader_drain_s)

    async def _in_writer(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, lambda: fn(*args, **kwargs))

    # ----------------------------------------------------------------- reporting
    async def status(self) -> dict[str, Any]:
        """Checkpoint, the stream's last sequence, lag, each view's version and seq, the
        poison events rejected (``rejected_events``, ``last_rejected_seq``) and erasure
        on disk (``erasure_pending_seq``: deletions applied whose bytes may still be in
        the file, None when none; ``erased_seq``: deletions up to it are erased), and
        ``projector``: :meth:`health` as a dict (state, last error, since). Answers
        while the file is not open (no views then)."""
        views: list[dict[str, Any]] = []
        rejected, last_rejected = 0, None
        if self.con is not None:
            with contextlib.suppress(*IO_ERRORS, duckdb.Error):
                views, (rejected, last_rejected) = await self._in_writer(self._read_states)
        try:
            info = await self.nc.jetstream().stream_info(self.config.stream)
            last: int | None = int(info.state.last_seq)
            self._stream_last_seq = last
        except Exception:
            last = None
        return {"checkpoint": self._checkpoint, "stream": self.config.stream,
                "stream_last_seq": last,
                "lag": None if last is None else max(0, last - self._checkpoint),
                "db_path": str(self.config.db_path), "views": views,
                "applied_since_start": self.applied,
                "rejected_events": rejected, "last_rejected_seq": last_rejected,
                "erasure_pending_seq": self._erasure_pending,
                "erased_seq": self._checkpoint if self._erasure_pending is None
                else self._erased_seq,
                "projector": self.health().to_dict()}

    def _read_states(self) -> tuple[list[dict[str, Any]], tuple[int, int | None]]:
        if self.con is None:  # closed by a retry while this call waited for the writer
            return [], (0, None)
        cur = self.con.cursor()
        try:
            # A view with nothing to write may be ahead of its stored checkpoint (_idle).
            views = [{"view": s.view, "version": s.version,
                      "seq": max(s.seq, self._floors.get(s.view, 0))}
                     for s in state.read_states(cur).values()]
            rejected: tuple[int, int | None] = (0, None)
            if any(v.takes_rejections for v in self.views):
                row = cur.execute("SELECT count(*), max(seq) FROM rejected_events").fetchone()
                if row is not None:
                    rejected = (int(row[0]), None if row[1] is None else int(row[1]))
            return views, rejected
        finally:
            cur.close()


def _log_rejections(rejections: Sequence[Rejection]) -> None:
    for r in rejections:
        log.error("rejected event seq=%d subject=%s: %s", r.seq, r.subject, r.error)


class _AllOrNone:
    """The lanes of one batch commit together or not at all: each lane thread, its
    statements done, votes and waits for the others (no event-loop round trip)."""

    def __init__(self, parties: int) -> None:
        self._cond = threading.Condition()
        self._left = parties
        self.failed = False

    def vote(self, ok: bool) -> bool:
        """Record this lane's outcome; wait for every lane's; whether to commit."""
        with self._cond:
            self.failed = self.failed or not ok
            self._left -= 1
            self._cond.notify_all()
            if ok:
                self._cond.wait_for(lambda: self._left == 0)
            return not self.failed


class _DataError(Exception):
    """A lane failed on an event's data (one of ``_DATA_ERRORS``); nothing committed."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


async def run_until_caught_up(projector: Projector, *, progress: Progress | None = None
                              ) -> tuple[int, float]:
    """Apply the log up to the stream's last sequence as of the call; return
    ``(events applied, seconds)``. Used by ``projections rebuild`` and the benchmark."""
    await projector.open()
    info = await projector.nc.jetstream().stream_info(projector.config.stream)
    target = int(info.state.last_seq)
    projector.progress = progress
    t0 = time.perf_counter()
    before = projector.applied
    if projector.checkpoint < target and await _has_events_after(projector, projector.checkpoint):
        await projector.run(until_seq=target)
        con = projector.con
        assert con is not None
        await projector._in_writer(con.execute, "CHECKPOINT")
    return projector.applied - before, time.perf_counter() - t0


async def _has_events_after(projector: Projector, seq: int) -> bool:
    """Whether any (unpurged) event exists above ``seq``."""
    from nats.js.errors import NotFoundError

    try:
        await projector.nc.jetstream().get_msg(projector.config.stream, seq=seq + 1,
                                               next=True, subject="events.>")
    except NotFoundError:
        return False
    return True
