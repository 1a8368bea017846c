"""Adding a view or bumping its version rebuilds just that view from the log."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from nats.aio.client import Client as NATS

from events import EventStore
from projections.projector import Projector, ProjectorConfig, run_until_caught_up
from projections.views import VIEWS
from projections.views.usage import UsageView
from threadlog.embedded_nats import EmbeddedNats

from .factories import create_thread, save_message


class UsageViewV2(UsageView):
    version: ClassVar[int] = 2


async def _run(nc: NATS, url: str, db: Path, stream: str, views: list) -> Projector:
    p = Projector(ProjectorConfig(db_path=db, stream=stream, views=views), nc, url)
    await run_until_caught_up(p)
    return p


async def test_bumping_a_view_version_rebuilds_only_that_view(
        store: EventStore, nc: NATS, nats_server: EmbeddedNats, tmp_path: Path) -> None:
    from bench.rebuild import fill

    last, _ = await fill(nc, store.stream, 2000, seed=5)
    db = tmp_path / "v.duckdb"
    without_usage = [v for v in VIEWS if v.name != "usage"]
    p = await _run(nc, nats_server.url, db, store.stream, without_usage)
    assert p.checkpoint == last
    cur = p.cursor()
    assert cur.execute("SELECT count(*) FROM information_schema.tables "
                       "WHERE table_name = 'usage'").fetchone() == (0,)
    messages_before = cur.execute("SELECT * FROM messages ORDER BY ALL").fetchall()
    await p.close()

    # Adding the usage view replays the log into it alone.
    p = await _run(nc, nats_server.url, db, store.stream, list(VIEWS))
    cur = p.cursor()
    usage_v1 = cur.execute("SELECT * FROM usage ORDER BY ALL").fetchall()
    assert usage_v1 and p.checkpoint == last
    assert cur.execute("SELECT * FROM messages ORDER BY ALL").fetchall() == messages_before
    await p.close()

    # New events, then a version bump: usage is rebuilt, the others continue.
    thread, _ = await create_thread(store, "u1")
    _, seq = await save_message(store, "u1", thread, 0)
    bumped = [UsageViewV2() if v.name == "usage" else v for v in VIEWS]
    p = await _run(nc, nats_server.url, db, store.stream, bumped)
    cur = p.cursor()
    assert p.checkpoint == seq
    assert cur.execute("SELECT * FROM usage ORDER BY ALL").fetchall() == usage_v1
    assert dict(cur.execute("SELECT view, version FROM _projection_views").fetchall())[
        "usage"] == 2
    assert cur.execute("SELECT count(*) FROM messages").fetchone() == (len(messages_before) + 1,)
    await p.close()
