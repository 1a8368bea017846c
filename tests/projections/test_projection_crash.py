"""Exactly once under crash: SIGKILL the projector process at random points of its
catch-up, many times, restart it, and compare every table with a clean rebuild."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
from nats.aio.client import Client as NATS

from bench.rebuild import fill
from events import EventStore
from events.replies import Reply
from projections.projector import Projector, ProjectorConfig, open_database, run_until_caught_up
from projections.views import VIEWS
from threadlog.embedded_nats import EmbeddedNats

EVENTS = 60_000
KILLS = 14


def tables_of(db: Path) -> dict[str, list[tuple[object, ...]]]:
    con = open_database(db, read_only=True)
    try:
        return {t: con.execute(f'SELECT * FROM "{t}" ORDER BY ALL').fetchall()
                for v in VIEWS for t in v.table_names}
    finally:
        con.close()


def checkpoint_of(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error:
        return 0
    try:
        row = con.execute("SELECT min(seq) FROM _projection_views").fetchone()
        return int(row[0]) if row and row[0] is not None else 0
    except duckdb.CatalogException:
        return 0
    finally:
        con.close()


def start(srv: EmbeddedNats, db: Path, stream: str, prefix: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "projections", "--nats-url", srv.url,
         "--creds", str(srv.service_creds), "--db", str(db),
         "--stream", stream, "--query-prefix", prefix, "--batch-max", "200",
         "--catchup-batch-max", "300", "--min-seq-timeout", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


async def test_sigkill_at_random_points_then_restart_equals_clean_rebuild(
        store: EventStore, nc: NATS, nats_server: EmbeddedNats, tmp_path: Path) -> None:
    last, deleted = await fill(nc, store.stream, EVENTS, seed=11)
    assert deleted, "the workload deletes (and purges) some threads"

    ref = Projector(ProjectorConfig(db_path=tmp_path / "ref.duckdb", stream=store.stream),
                    nc, nats_server.endpoint)
    await run_until_caught_up(ref)
    await ref.close()
    expected = tables_of(tmp_path / "ref.duckdb")
    assert sum(len(rows) for rows in expected.values()) > EVENTS // 3

    db, prefix, rnd = tmp_path / "crash.duckdb", f"q{os.getpid()}x", random.Random(5)
    mid_catch_up = []
    for _ in range(KILLS):
        proc = start(nats_server, db, store.stream, prefix)
        await asyncio.sleep(rnd.uniform(0.4, 1.2))  # a random moment, not a wait for state
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        cp = checkpoint_of(db)
        mid_catch_up.append(0 < cp < last)
        if cp >= last:
            break
    assert sum(mid_catch_up) >= 5, f"too few kills during catch-up: {mid_catch_up}"
    print("kills during catch-up:", mid_catch_up)

    proc = start(nats_server, db, store.stream, prefix)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert line.strip() == b"projector ready"
        # The query waits (bounded, event-driven) until the checkpoint reaches the end.
        msg = await nc.request(f"{prefix}.op.status", f'{{"user_id": "op", "min_seq": {last}, '
                               f'"wait_s": 30}}'.encode(), timeout=35)
        reply = Reply.model_validate_json(msg.data)
        assert reply.ok, reply.error
        assert reply.result["checkpoint"] >= last
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, proc.stderr.read().decode() if proc.stderr else ""
    got = tables_of(db)
    for table, rows in expected.items():
        assert got[table] == rows, f"{table} differs from a clean rebuild"
