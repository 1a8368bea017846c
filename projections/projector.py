"""The projector: the one process that owns the DuckDB file and applies the log to views.

Guarantees
- Exactly-once effects (invariant 5): each batch of events is applied in one DuckDB
  transaction that also records, per view, the last stream sequence applied
  (``_projection_views.seq``). On start the feed resumes at the smallest view checkpoint
  + 1, and each view ignores events at or below its own checkpoint. Killing the process
  at any moment (SIGKILL included) and restarting yields the tables of a clean rebuild.
- Order: events are applied in stream order (an ordered consumer, :mod:`projections.feed`).
- Batching: a batch is everything the feed has buffered, up to ``batch_max`` events
  (about 1000). While one batch is written (in a writer thread; DuckDB releases the GIL)
  the next is decoded, so a busy projector makes big batches and an idle one applies a
  single event within milliseconds.
- Views are independent: a new view, a view whose version changed, or a view named in
  ``reset`` is dropped, recreated and rebuilt from the log while the others only skip.
- Events no view handles are skipped but still advance the checkpoint.

Failure modes
- A lost NATS connection: the feed is restarted from the checkpoint after a short backoff
  (``run`` keeps going until :meth:`stop`).
- An event a view cannot apply (a malformed payload that slipped past validation) is
  recorded in ``_projection_skipped`` (view, seq, error) and skipped, deterministically.
- A key conflict (the same message id saved twice in different batches) re-applies the
  batch with ``INSERT OR REPLACE``: the later save wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from nats.aio.client import Client as NATS

from events.catalogue import CATALOGUE
from events.errors import ThreadlogError, Timeout, Unavailable
from projections import state
from projections.feed import OrderedFeed
from projections.view import View, ViewBatch
from projections.views import VIEWS

log = logging.getLogger(__name__)

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
        self._checkpoint = 0
        self._cond: asyncio.Condition | None = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="projector-writer")
        self._feed: OrderedFeed | None = None
        self._stopping = False
        self._stopped = asyncio.Event()
        self._wake = asyncio.Event()
        self._versions = {t: CATALOGUE.model(t).schema_version for t in CATALOGUE.types()}
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
        self.con = open_database(self.config.db_path)
        reset = [v.name for v in self.views] if "*" in self.config.reset else self.config.reset
        states = await self._in_writer(state.prepare_views, self.con, self.views,
                                       stream_id=stream_id, reset=reset)
        self._floors = {name: st.seq for name, st in states.items()}
        self._checkpoint = min(self._floors.values(), default=0)

    async def _stream_id(self) -> str:
        info = await self.nc.jetstream().stream_info(self.config.stream)
        return f"{self.config.stream}@{info.created.isoformat() if info.created else ''}"

    async def close(self) -> None:
        if self.con is not None:
            con, self.con = self.con, None
            await self._in_writer(con.close)
        self._writer.shutdown(wait=True)

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
        feed = OrderedFeed(self.nats_url, self.nc, self.config.stream)
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
                batches, skipped = self._build(items)
                last = items[-1][0]
                if inflight is not None:
                    await inflight
                inflight = asyncio.ensure_future(self._commit(batches, skipped, last,
                                                              len(items), feed))
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

    async def _take(self, feed: OrderedFeed) -> list[tuple[int, bytes]]:
        take = asyncio.ensure_future(feed.take(self.config.batch_max))
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

    def _build(self, items: list[tuple[int, bytes]]
               ) -> tuple[list[tuple[str, ViewBatch]], list[tuple[str, int, str]]]:
        """Decode ``items`` and fold them into one batch per view (event-loop thread)."""
        batches: list[tuple[str, ViewBatch]] = []
        routes: dict[str, list[tuple[int, str, ViewBatch]]] = {}
        first = items[0][0]
        for view in self.views:
            floor = self._floors.get(view.name, 0)
            if floor >= items[-1][0]:
                continue
            b = view.new_batch()
            batches.append((view.name, b))
            for t in view.handles:
                routes.setdefault(t, []).append((floor if floor >= first else 0, view.name, b))
        skipped: list[tuple[str, int, str]] = []
        loads = json.loads
        versions = self._versions
        for seq, payload in items:
            env = loads(payload)
            targets = routes.get(env["type"])
            if not targets:
                continue
            if env.get("version", 1) != versions.get(env["type"], 1):
                env = self._upcast(env)
            for floor, name, b in targets:
                if seq > floor:
                    try:
                        b.add(seq, env)
                    except Exception as exc:
                        skipped.append((name, seq, f"{type(exc).__name__}: {exc}"))
        return batches, skipped

    def _upcast(self, env: dict[str, Any]) -> dict[str, Any]:
        try:
            event = CATALOGUE.decode(env["type"], env.get("version", 1), env["data"])
        except ThreadlogError:
            return env
        return {**env, "data": event.model_dump(mode="json", exclude={"type"})}

    async def _commit(self, batches: list[tuple[str, ViewBatch]],
                      skipped: list[tuple[str, int, str]], last: int, count: int,
                      feed: OrderedFeed) -> None:
        names = [name for name, _ in batches]
        await self._in_writer(self._apply, [b for _, b in batches], names, skipped, last)
        for name in names:
            self._floors[name] = max(self._floors.get(name, 0), last)
        self.applied += count
        self._checkpoint = min(self._floors.values(), default=last)
        assert self._cond is not None
        async with self._cond:
            self._cond.notify_all()
        if self.progress is not None:
            self.progress(self._checkpoint, count, max(0, feed.pending))

    def _apply(self, batches: list[ViewBatch], names: list[str],
               skipped: list[tuple[str, int, str]], last: int, replace: bool = False) -> None:
        """One transaction: every view's rows, the skipped events, the checkpoints."""
        con = self.con
        assert con is not None
        con.begin()
        try:
            for b in batches:
                b.flush(con, replace=replace)
            if skipped:
                con.execute("CREATE TABLE IF NOT EXISTS _projection_skipped "
                            "(view VARCHAR, seq BIGINT, error VARCHAR)")
                con.execute("INSERT INTO _projection_skipped SELECT unnest($1::VARCHAR[]), "
                            "unnest($2::BIGINT[]), unnest($3::VARCHAR[])",
                            [list(x) for x in zip(*skipped, strict=True)])
            state.advance(con, names, last)
            con.commit()
        except duckdb.ConstraintException:
            con.rollback()
            if replace:
                raise
            self._apply(batches, names, skipped, last, replace=True)
        except BaseException:
            con.rollback()
            raise

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
            return [{"view": s.view, "version": s.version, "seq": s.seq}
                    for s in state.read_states(cur).values()]
        finally:
            cur.close()


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
