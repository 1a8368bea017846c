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
    version: ClassVar[int] = UsageView.version + 1


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
    p = await _run(nc, nats_server.endpoint, db, store.stream, without_usage)
    assert p.checkpoint == last
    cur = p.cursor()
    assert cur.execute("SELECT count(*) FROM information_schema.tables "
                       "WHERE table_name = 'usage'").fetchone() == (0,)
    messages_before = cur.execute("SELECT * FROM messages ORDER BY ALL").fetchall()
    await p.close()

    # Adding the usage view replays the log into it alone.
    p = await _run(nc, nats_server.endpoint, db, store.stream, list(VIEWS))
    cur = p.cursor()
    usage_v1 = cur.execute("SELECT * FROM usage ORDER BY ALL").fetchall()
    assert usage_v1 and p.checkpoint == last
    assert cur.execute("SELECT * FROM messages ORDER BY ALL").fetchall() == messages_before
    await p.close()

    # New events, then a version bump: usage is rebuilt, the others continue.
    thread, _ = await create_thread(store, "u1")
    _, seq = await save_message(store, "u1", thread, 0)
    bumped = [UsageViewV2() if v.name == "usage" else v for v in VIEWS]
    p = await _run(nc, nats_server.endpoint, db, store.stream, bumped)
    cur = p.cursor()
    assert p.checkpoint == seq
    assert cur.execute("SELECT * FROM usage ORDER BY ALL").fetchall() == usage_v1
    assert dict(cur.execute("SELECT view, version FROM _projection_views").fetchall())[
        "usage"] == UsageView.version + 1
    assert cur.execute("SELECT count(*) FROM messages").fetchone() == (len(messages_before) + 1,)
    await p.close()


async def test_a_batch_starting_below_a_views_checkpoint_still_finalizes_its_messages(
        store: EventStore, nc: NATS, nats_server: EmbeddedNats, tmp_path: Path) -> None:
    """A restart resumes at the slowest view's checkpoint + 1: the first batch then holds
    events another view applied already. A message that view saved before, finalized
    after its checkpoint, must still be finalized (the fold must not take the stored row
    for one saved in this batch)."""
    from events import Aggregate, MessageFinalized, TextPart
    from projections.views.messages import MessagesView
    from projections.views.threads import ThreadsView

    db = tmp_path / "v.duckdb"
    tid, _ = await create_thread(store, "u1")
    mid, saved_seq = await save_message(store, "u1", tid, 0, role="assistant",
                                        status="pending", text="")
    p = await _run(nc, nats_server.endpoint, db, store.stream, [MessagesView()])
    await p.close()
    await store.append(Aggregate.thread(tid), [MessageFinalized(
        message_id=mid, thread_id=tid, status="success", content=[TextPart(text="done")])],
        user_id="u1")
    # threads is new: the feed starts at 1, below messages' checkpoint (saved_seq).
    p = await _run(nc, nats_server.endpoint, db, store.stream, [ThreadsView(), MessagesView()])
    row = p.cursor().execute("SELECT status, text, seq FROM messages WHERE message_id = ?",
                             [mid]).fetchall()
    await p.close()
    assert row == [("success", "done", saved_seq)]
