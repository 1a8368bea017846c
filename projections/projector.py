"""The projector: the one process that owns the DuckDB file and applies the log to views.

Guarantees
- Exactly-once effects (invariant 5): each batch of events is applied to each view in a
  DuckDB transaction that also records that view's last stream sequence applied
  (``_projection_views.seq``); views of different writer lanes (``ProjectorConfig.lanes``)
  commit in separate transactions, in parallel. On start the feed resumes at the
  smallest view checkpoint + 1, and each view ignores events at or below its own.
  Killing the process at any moment (SIGKILL included) and restarting yields the tables
  of a clean rebuild.
- Order: events are applied in stream order (an ordered consumer, :mod:`projections.feed`).
- Batching: a batch is everything the feed has buffered, up to ``batch_max`` events
  (1000) when live and up to ``catchup_batch_max`` (30,000) while a backlog waits in the
  stream (see ``ProjectorConfig``). While one batch is written (in the writer lanes'
  threads; DuckDB releases the GIL) the next is prepared, so a busy projector makes big batches
  and an idle one applies a single event within milliseconds.
- Views are independent: a new view, a view whose version changed, or a view named in
  ``reset`` is dropped, recreated and rebuilt from the log while the others only skip.
- Events no view handles are skipped but still advance the checkpoint.

Failure modes
- A lost NATS connection: the feed is restarted from the checkpoint after a short backoff
  (``run`` keeps going until :meth:`stop`).
- A payload missing a view's key fields (impossible for events validated at append)
  yields no row; a SQL error in a view stops ``run`` with the exception (fail loudly).
- A key conflict (the same message id saved twice in different batches) re-applies the
  batch with ``INSERT OR REPLACE``: the later save wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from nats.aio.client import Client as NATS

from events.catalogue import CATALOGUE
from events.errors import ThreadlogError, Timeout, Unavailable
from projections import state
from projections.batch import Batch
from projections.feed import Item, OrderedFeed
from projections.view import SqlView, View, ViewBatch
from projections.views import VIEWS

log = logging.getLogger(__name__)
_EVENTS = "_projector_batch"
IDLE_STORE_EVERY = 10_000
"""Events a view with nothing to write may go without storing its checkpoint."""
_THREAD = b"events.thread."
_DELETED = b".thread_deleted"
_POOL = pa.system_memory_pool()
"""Batches are allocated with malloc, not pyarrow's default mimalloc pool, which keeps
freed pages (about 45 MB more resident memory during a rebuild)."""

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
class Prepared:
    """A batch ready to apply: the events as Arrow, and each view's share (None: the view
    handles none of them but its checkpoint still advances)."""

    table: pa.Table
    batches: list[tuple[View, Batch | ViewBatch | None]]
    last_seq: int
    count: int


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


class Projector:
    """Owns the DuckDB file; ``await run()`` applies the log until ``stop()``."""

    def __init__(self, config: ProjectorConfig, nc: NATS, nats_url: str) -> None:
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
        self._version_markers = {
            t.encode(): f'"version":{CATALOGUE.model(t).schema_version},'.encode()
            for t in CATALOGUE.types() if CATALOGUE.model(t).schema_version != 1}
        """Types whose current schema is newer than 1: payloads without this marker (the
        envelope's compact ``"version":N,``) are upcast before the views see them."""
        self.progress: Progress | None = None
        self.applied = 0

    # ----------------------------------------------------------------- state
    @property
    def checkpoint(self) -> int:
        """Last stream sequence applied to every view (committed)."""
        return self._checkpoint

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor for one reader (one per request or thread)."""
        if self.con is None:
            raise Unavailable("projector is not open")
        return self.con.cursor()

    async def open(self) -> None:
        """Open the file and bring the views to their registered versions."""
        if self.con is not None:
            return
        self._cond = asyncio.Condition()
        stream_id = await self._stream_id()
        if self.config.gil_switch_interval_s is not None:
            self._switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(self.config.gil_switch_interval_s)
        self.con = open_database(self.config.db_path)
        self.con.execute(f"SET checkpoint_threshold = '{int(self.config.wal_checkpoint_mb)}MB'")
        if self.config.duckdb_threads:
            self.con.execute(f"SET threads = {int(self.config.duckdb_threads)}")
        reset = [v.name for v in self.views] if "*" in self.config.reset else self.config.reset
        states = await self._in_writer(state.prepare_views, self.con, self.views,
                                       stream_id=stream_id, reset=reset)
        self._floors = {name: st.seq for name, st in states.items()}
        self._stored = dict(self._floors)
        self._checkpoint = min(self._floors.values(), default=0)
        self._lanes = [(self._writer, self.con)] + [
            (ThreadPoolExecutor(1, thread_name_prefix=f"projector-lane{i}"), self.con.cursor())
            for i in range(1, max(1, self.config.lanes))]

    async def _stream_id(self) -> str:
        info = await self.nc.jetstream().stream_info(self.config.stream)
        return f"{self.config.stream}@{info.created.isoformat() if info.created else ''}"

    async def close(self) -> None:
        lanes, self._lanes = self._lanes, []
        for executor, cur in lanes[1:]:
            await asyncio.get_running_loop().run_in_executor(executor, cur.close)
            executor.shutdown(wait=True)
        if self.con is not None:
            con, self.con = self.con, None
            await self._in_writer(con.close)
        self._writer.shutdown(wait=True)
        if self._switch_interval is not None:
            sys.setswitchinterval(self._switch_interval)
            self._switch_interval = None

    # ----------------------------------------------------------------- waiting
    async def wait_for(self, seq: int, timeout: float | None = None) -> int:
        """Wait until the checkpoint reaches ``seq``; return the checkpoint.

        Event-driven (woken by each commit). Raises :class:`Timeout` after ``timeout``
        seconds (default ``min_seq_timeout_s``) with how far behind the projection is.
        """
        if self._checkpoint >= seq:
            return self._checkpoint
        assert self._cond is not None, "projector not open"
        limit = self.config.min_seq_timeout_s if timeout is None else timeout
        try:
            async with self._cond:
                await asyncio.wait_for(self._cond.wait_for(lambda: self._checkpoint >= seq),
                                       limit)
        except TimeoutError:
            cp = self._checkpoint
            raise Timeout(f"projection is at sequence {cp}, {seq - cp} behind min_seq {seq} "
                          f"after {limit:g}s", details={"checkpoint": cp, "min_seq": seq,
                                                        "behind": seq - cp,
                                                        "waited_s": limit}) from None
        return self._checkpoint

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
                items = await self._take(feed)
                if not items:
                    continue
                prepared = self._build(items)
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
        try:
            await asyncio.wait({take, wake}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
        if take.done():
            return take.result()
        take.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await take
        self._wake.clear()
        return []

    def _build(self, items: list[Item]) -> Prepared:
        """Turn ``items`` into one Arrow table and each view's :class:`Batch` (event loop).

        SQL views get the JSON as is (the type is the subject's last token; DuckDB decodes).
        Python-folding views get each of their events decoded once with ``json``. An event
        whose envelope ``version`` is older than its model is upcast (decoded, upgraded,
        re-encoded) first.
        """
        items = _without_content_of_deleted_threads(items)
        seqs = [it[0] for it in items]
        types = [it[1][it[1].rfind(b".") + 1:] for it in items]
        payloads = [it[2] for it in items]
        for i, t in enumerate(types):
            marker = self._version_markers.get(t)
            if marker is not None and marker not in payloads[i]:
                payloads[i] = self._upcast(payloads[i])
        present = {t.decode() for t in set(types)}
        first, last = seqs[0], seqs[-1]
        table = pa.Table.from_arrays(
            [pa.array(seqs, pa.int64(), memory_pool=_POOL),
             pa.array(types, pa.binary(), memory_pool=_POOL).cast(pa.string(),
                                                                   memory_pool=_POOL),
             pa.array(payloads, pa.binary(), memory_pool=_POOL).cast(pa.string(),
                                                                     memory_pool=_POOL)],
            names=["seq", "type", "payload"])
        batches: list[tuple[View, Batch | ViewBatch | None]] = []
        shared: dict[str, Any] = {}
        folding: dict[bytes, list[tuple[int, ViewBatch]]] = {}
        for view in self.views:
            floor = self._floors.get(view.name, 0)
            if floor >= last:
                continue
            mine = frozenset(view.handles & present)
            if not mine:
                batches.append((view, None))
            elif isinstance(view, SqlView):
                where = "type IN (" + ", ".join(f"'{t}'" for t in sorted(mine)) + ")"
                if floor >= first:
                    where += f" AND seq > {floor}"
                batches.append((view, Batch(f"(SELECT seq, type, payload FROM {_EVENTS} "
                                            f"WHERE {where})", mine, floor=floor, first=first,
                                            whole=_EVENTS, shared=shared)))
            else:
                vb = view.new_batch()
                batches.append((view, vb))
                for name in mine:
                    folding.setdefault(name.encode(), []).append((floor, vb))
        if folding:
            loads = json.loads
            for seq, t, payload in zip(seqs, types, payloads, strict=True):
                targets = folding.get(t)
                if targets:
                    env = loads(payload)
                    for floor, vb in targets:
                        if seq > floor:
                            vb.add(seq, env)
        return Prepared(table, batches, last, len(items))

    def _upcast(self, payload: bytes) -> bytes:
        env = json.loads(payload)
        try:
            event = CATALOGUE.decode(env["type"], env.get("version", 1), env["data"])
        except ThreadlogError as exc:
            log.warning("event %s kept as is: %s", env.get("event_id"), exc)
            return payload
        env["data"] = event.model_dump(mode="json", exclude={"type"})
        env["version"] = type(event).schema_version
        return json.dumps(env).encode()

    async def _commit(self, prepared: Prepared, feed: OrderedFeed) -> None:
        if self._catching_up != self._vacuum_off:
            await self._in_writer(self._set_vacuum, not self._catching_up)
        lanes: dict[int, list[tuple[View, Batch | ViewBatch | None]]] = {}
        for view, batch in prepared.batches:
            lanes.setdefault(view.lane % len(self._lanes), []).append((view, batch))
        last = prepared.last_seq
        for i, share in list(lanes.items()):
            if self._idle(share, last):  # nothing to write: the checkpoint moves in memory
                del lanes[i]
                for view, _ in share:
                    self._floors[view.name] = max(self._floors.get(view.name, 0), last)
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(*(
            loop.run_in_executor(self._lanes[i][0], self._apply, self._lanes[i][1], share,
                                 prepared)
            for i, share in lanes.items()), return_exceptions=True)
        for share, result in zip(lanes.values(), results, strict=True):
            if not isinstance(result, BaseException):  # that lane's transaction committed
                for view, _ in share:
                    self._floors[view.name] = max(self._floors.get(view.name, 0), last)
                    self._stored[view.name] = self._floors[view.name]
        self._checkpoint = min(self._floors.values(), default=last)
        assert self._cond is not None
        async with self._cond:
            self._cond.notify_all()
        for result in results:
            if isinstance(result, BaseException):
                raise result
        if self._wal.exists() and self._wal.stat().st_size >= self.config.wal_checkpoint_mb << 20:
            await self._in_writer(self._fold_wal)
        self.applied += prepared.count
        if self.progress is not None:
            self.progress(self._checkpoint, prepared.count, max(0, feed.pending))

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
    def _apply(con: duckdb.DuckDBPyConnection,
               share: list[tuple[View, Batch | ViewBatch | None]], prepared: Prepared,
               replace: bool = False) -> None:
        """One transaction on ``con``: the rows of the views in ``share`` and their
        checkpoints (a lane's writer thread). A key conflict re-applies with replace."""
        con.register(_EVENTS, prepared.table)
        try:
            con.begin()
            try:
                for view, batch in share:
                    if isinstance(batch, Batch):
                        assert isinstance(view, SqlView)
                        view.apply(con, batch, replace=replace)
                    elif batch is not None:
                        batch.flush(con, replace=replace)
                state.advance(con, [v.name for v, _ in share], prepared.last_seq)
                con.commit()
            except duckdb.ConstraintException:
                con.rollback()
                if replace:
                    raise
                Projector._apply(con, share, prepared, replace=True)
            except BaseException:
                con.rollback()
                raise
        finally:
            with contextlib.suppress(duckdb.Error):
                con.unregister(_EVENTS)

    async def _in_writer(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, lambda: fn(*args, **kwargs))

    # ----------------------------------------------------------------- reporting
    async def status(self) -> dict[str, Any]:
        """Checkpoint, the stream's last sequence, lag, and each view's version and seq."""
        views = await self._in_writer(self._read_states)
        try:
            info = await self.nc.jetstream().stream_info(self.config.stream)
            last = int(info.state.last_seq)
        except Exception:
            last = None
        return {"checkpoint": self._checkpoint, "stream": self.config.stream,
                "stream_last_seq": last,
                "lag": None if last is None else max(0, last - self._checkpoint),
                "db_path": str(self.config.db_path), "views": views,
                "applied_since_start": self.applied}

    def _read_states(self) -> list[dict[str, Any]]:
        assert self.con is not None
        cur = self.con.cursor()
        try:
            # A view with nothing to write may be ahead of its stored checkpoint (_idle).
            return [{"view": s.view, "version": s.version,
                     "seq": max(s.seq, self._floors.get(s.view, 0))}
                    for s in state.read_states(cur).values()]
        finally:
            cur.close()


def _without_content_of_deleted_threads(items: list[Item]) -> list[Item]:
    """Drop the events of a thread that come before its ``thread_deleted`` in the same
    batch (content that is gone: invariant 8), keeping the tombstone and anything after
    it. Thread events are on ``events.thread.<id>.<type>``; events of other aggregates
    that name the thread in their payload (canvases, usage) are the views' business.
    Events of earlier batches are removed by the views when they apply the tombstone."""
    cut: dict[bytes, int] = {}
    for seq, subject, _ in items:
        if subject.endswith(_DELETED) and subject.startswith(_THREAD):
            cut[subject[:len(subject) - len(_DELETED) + 1]] = seq
    if not cut:
        return items
    prefixes = tuple(cut)
    return [it for it in items if not it[1].startswith(prefixes)
            or it[0] >= cut[it[1][:it[1].rfind(b".") + 1]]]


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
