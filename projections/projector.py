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

Failure modes
- A lost NATS connection: the feed is restarted from the checkpoint after a short backoff
  (``run`` keeps going until :meth:`stop`).
- A payload missing a view's key fields yields no row (it decodes, so it is not poison).
- An error that is not about an event's data (I/O, memory, a SQL bug) stops ``run`` with
  the exception (fail loudly), as does a batch that fails while no single event fails
  alone.
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
from pathlib import Path
from typing import Any

import duckdb
from nats.aio.client import Client as NATS

from events.connection import NatsEndpoint
from events.errors import Timeout, Unavailable
from projections import erasure, state
from projections.batch import Batch
from projections.feed import Item, OrderedFeed
from projections.prepare import (  # noqa: F401  (re-exported for tests)
    EVENTS,
    Prepared,
    _without_content_of_deleted_threads,
    prepare,
)
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
        self._cond: asyncio.Condition | None = None
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

    # ----------------------------------------------------------------- state
    @property
    def checkpoint(self) -> int:
        """Last stream sequence applied to every view (committed)."""
        return self._checkpoint

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor for one reader (one per request or thread). A compaction
        (:mod:`projections.erasure`) reopens the file: prefer :meth:`reading`, which it
        waits for; a bare cursor held across one fails afterwards."""
        if self.con is None:
            raise Unavailable("projector is not open")
        return self.con.cursor()

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
        """Open the file and bring the views to their registered versions."""
        if self.con is not None:
            return
        self._cond = asyncio.Condition()
        stream_id = await self._stream_id()
        if self.config.gil_switch_interval_s is not None:
            self._switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(self.config.gil_switch_interval_s)
        erasure.remove_scratch(Path(self.config.db_path))
        self._connect()
        assert self.con is not None
        reset = [v.name for v in self.views] if "*" in self.config.reset else self.config.reset
        states = await self._in_writer(state.prepare_views, self.con, self.views,
                                       stream_id=stream_id, reset=reset)
        self._floors = {name: st.seq for name, st in states.items()}
        self._stored = dict(self._floors)
        self._checkpoint = min(self._floors.values(), default=0)
        await self._in_writer(self._load_records)

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

    async def _stream_id(self) -> str:
        info = await self.nc.jetstream().stream_info(self.config.stream)
        return f"{self.config.stream}@{info.created.isoformat() if info.created else ''}"

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
            await loop.run_in_executor(executor, cur.close)
            if shutdown:
                executor.shutdown(wait=True)
        if self.con is not None:
            con, self.con = self.con, None
            await self._in_writer(con.close)

    # ----------------------------------------------------------------- waiting
    async def wait_for(self, seq: int, timeout: float | None = None) -> int:
        """Wait until the checkpoint reaches ``seq``; return the checkpoint.

        Event-driven (woken by each commit). Raises :class:`Timeout` after ``timeout``
        seconds (default ``min_seq_timeout_s``) with how far behind the projection is.
        """
        if self._checkpoint >= seq:
            return self._checkpoint
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
        assert self._cond is not None, "projector not open"
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
        assert self._cond is not None
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
        await self.open()
        self._stopping = False
        backoff = 0.1
        while not self._stopping:
            if until_seq is not None and self._checkpoint >= until_seq:
                break
            try:
                await self._consume(until_seq)
                backoff = 0.1
            except Unavailable as exc:
                if self._stopping:
                    break
                log.warning("projector feed unavailable (%s); retrying in %.1fs", exc, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), backoff)
                backoff = min(backoff * 2, 5.0)
        if self._erasure_pending is not None and not self._stopping:
            await self._erase()

    async def _consume(self, until_seq: int | None) -> None:
        feed = OrderedFeed(self.nats_url, self.nc, self.config.stream,
                           high_water=max(20_000, self.config.catchup_batch_max))
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
                items = await self._take(feed)
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

    async def _take(self, feed: OrderedFeed) -> list[Item]:
        cfg = self.config
        backlog = max(0, feed.pending) + feed.buffered
        self._catching_up = backlog > cfg.batch_max
        limit = cfg.catchup_batch_max if self._catching_up else cfg.batch_max
        take = asyncio.ensure_future(feed.take(max(limit, cfg.batch_max)))
        wake = asyncio.ensure_future(self._wake.wait())
        due = None
        if self._erasure_pending is not None and not self._catching_up:
            due = max(0.0, self._erasure_due - time.monotonic())
        try:
            await asyncio.wait({take, wake}, timeout=due, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
        if take.done():
            return take.result()
        take.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await take
        if self._wake.is_set():
            self._wake.clear()
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

        def in_lane(i: int, con: duckdb.DuckDBPyConnection,
                    share: list[tuple[View, Batch | ViewBatch | None]]) -> bool:
            key = f"{erasure.PENDING_KEY}:{i}" if prepared.tombstones else None
            try:
                erased = self._begin(con, share, prepared, erasure_key=key)
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
               erasure_key: str | None, replace: bool = False) -> bool:
        """Open a transaction on ``con`` (a lane's writer thread) holding the rows of the
        views in ``share`` and their checkpoints; :meth:`_end` commits or rolls it back.
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
                state.advance(con, [v.name for v, _ in share], prepared.last_seq)
                erased = erasure.take_removed() > 0 and erasure_key is not None
                if erased:
                    state.write_meta(con, str(erasure_key), str(prepared.last_seq))
                return erased
            except duckdb.ConstraintException:
                con.rollback()
                if replace:
                    raise
                return Projector._begin(con, share, prepared, erasure_key, replace=True)
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
        the file, None when none; ``erased_seq``: deletions up to it are erased)."""
        views, (rejected, last_rejected) = await self._in_writer(self._read_states)
        try:
            info = await self.nc.jetstream().stream_info(self.config.stream)
            last = int(info.state.last_seq)
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
                else self._erased_seq}

    def _read_states(self) -> tuple[list[dict[str, Any]], tuple[int, int | None]]:
        assert self.con is not None
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
