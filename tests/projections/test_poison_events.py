"""Poison events (invariant 11): a forged event that cannot be decoded or applied is
quarantined in ``rejected_events``, logged and counted, and every other event is applied;
a restart changes nothing and a rebuild gives the same tables."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from events import Aggregate, EventEnvelope, EventStore, MessageSaved, TextPart, new_id
from events.connection import NatsEndpoint
from projections.projector import Projector, ProjectorConfig, run_until_caught_up
from projections.screen import RAW_PREFIX
from projections.views import VIEWS
from threadlog.embedded_nats import EmbeddedNats

from .factories import create_thread, save_message

USER = "u-poison"


@contextlib.asynccontextmanager
async def running(nc: NATS, url: NatsEndpoint, stream: str, db: Path
                  ) -> AsyncIterator[Projector]:
    p = Projector(ProjectorConfig(db_path=db, stream=stream), nc, url)
    await p.open()
    task = asyncio.create_task(p.run())
    try:
        yield p
    finally:
        p.stop()
        await asyncio.wait_for(task, 15)
        await p.close()


def envelope(thread: str, **data: Any) -> dict[str, Any]:
    ev = MessageSaved(message_id=new_id(), thread_id=thread, order=9, role="user",
                      content=[TextPart(text="x")])
    env: dict[str, Any] = json.loads(
        EventEnvelope.wrap(ev, Aggregate.thread(thread), user_id=USER).to_bytes())
    env["data"].update(data)
    return env


def tables(p: Projector) -> dict[str, list[tuple[object, ...]]]:
    cur = p.cursor()
    try:
        return {t: cur.execute(f'SELECT * FROM "{t}" ORDER BY ALL').fetchall()
                for v in VIEWS for t in v.table_names}
    finally:
        cur.close()


async def test_poison_is_quarantined_and_the_projector_keeps_going(
        store: EventStore, nc: NATS, nats_server: EmbeddedNats, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    thread, _ = await create_thread(store, USER)
    subject = f"events.thread.{thread}.message_saved"
    huge = b'{"type": "message_saved", "data": "' + b"h" * 900_000 + b'"}'
    poisons: dict[str, tuple[str, bytes, str]] = {
        "invalid utf-8": (subject, b'{"type": "message_saved", "data": {"t": "\xff\xfe"}}',
                          "not valid UTF-8"),
        "not json": (subject, b"this is {not json", "not JSON"),
        "wrong shape": (subject, b"[1, 2, 3]", "not an object"),
        "malformed json": (subject, b'{"type": "message_saved", "data": {"message_id": }}',
                           "Malformed JSON"),
        "invalid data": (subject, json.dumps(envelope(thread, order="first")).encode(),
                         "Conversion"),
        "unknown type": (f"events.thread.{thread}.no_such_event",
                         json.dumps(envelope(thread)).encode(), "unknown event type"),
        "huge": (subject, huge, "'data' is a JSON string"),
    }
    js = nc.jetstream()
    db = tmp_path / "views.duckdb"
    caplog.set_level(logging.ERROR, logger="projections.projector")
    async with running(nc, nats_server.endpoint, store.stream, db) as p:
        good, seqs = [], {}
        mid, _ = await save_message(store, USER, thread, 0, text="before")
        good.append(mid)
        for name, (subj, payload, _) in poisons.items():
            seqs[name] = (await js.publish(subj, payload, stream=store.stream)).seq
            mid, last = await save_message(store, USER, thread, len(good), text=f"after {name}")
            good.append(mid)
        await p.wait_for(last, timeout=20)

        cur = p.cursor()
        stored = {r[0] for r in cur.execute("SELECT message_id FROM messages WHERE "
                                            "thread_id = ?", [thread]).fetchall()}
        assert stored == set(good), "every good event, before and after each poison"
        rows = {r[0]: r for r in cur.execute(
            "SELECT seq, subject, type, error, raw_prefix, raw_bytes, stored_at "
            "FROM rejected_events").fetchall()}
        cur.close()
        assert sorted(rows) == sorted(seqs.values())
        for name, (subj, payload, error) in poisons.items():
            _, r_subject, r_type, r_error, prefix, size, stored_at = rows[seqs[name]]
            assert r_subject == subj and error in r_error, (name, r_error)
            assert size == len(payload) and len(prefix) <= 4 * RAW_PREFIX
            assert stored_at is not None
            assert r_type == (None if name == "unknown type" else "message_saved")
        assert rows[seqs["invalid utf-8"]][4].endswith('"\\xff\\xfe"}}')
        logged = [r.getMessage() for r in caplog.records if "rejected event" in r.getMessage()]
        assert len(logged) == len(poisons)
        assert all(f"seq={s}" in " ".join(logged) for s in seqs.values())
        status = await p.status()
        assert status["rejected_events"] == len(poisons)
        assert status["last_rejected_seq"] == max(seqs.values())
        before = tables(p)

    caplog.clear()
    async with running(nc, nats_server.endpoint, store.stream, db) as p:  # restart
        _, last = await save_message(store, USER, thread, 99, text="after restart")
        await p.wait_for(last, timeout=20)
        after = tables(p)
        assert (await p.status())["rejected_events"] == len(poisons)
    assert after["rejected_events"] == before["rejected_events"]
    assert not [r for r in caplog.records if "rejected event" in r.getMessage()]

    rebuilt = Projector(ProjectorConfig(db_path=tmp_path / "rebuilt.duckdb",
                                        stream=store.stream), nc, nats_server.endpoint)
    await run_until_caught_up(rebuilt)
    try:
        assert tables(rebuilt) == after
    finally:
        await rebuilt.close()
