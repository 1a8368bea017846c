"""The trust boundary, tried as an attacker would, over a real nats-server with auth on.

Every role's forbidden action fails (a permissions violation from the server, or a
``forbidden`` reply) and appends nothing; what a role may do still works.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events import new_id
from handlers import subjects as thread_subjects
from handlers.billing import subjects as billing_subjects
from handlers.canvas import subjects as canvas_subjects
from handlers.client import Client
from handlers.generation_limits import subjects as generation_limit_subjects
from handlers.rate_limits import subjects as rate_limit_subjects
from projections.queries.service import QUERIES
from scheduler.invoice_scheduler import RUN_SUBJECT
from tests.conftest import ConnectAs, LogWatch, RoleConnection, RuntimeFactory
from threadlog.embedded_nats import EmbeddedNats
from threadlog.health import HEALTH_SUBJECT
from threadlog.nats_auth import NatsAuth
from threadlog.parts import serve_parts
from threadlog.runtime import Runtime

USER_SUBJECTS = [*thread_subjects.ALL, *canvas_subjects.ALL, billing_subjects.BUDGET_STATUS,
                 *(f"query.{{user_id}}.{q.name}" for q in QUERIES if not q.operators)]
"""Every subject that acts for a user (``{user_id}`` filled in per request)."""
OPS_SUBJECTS = [billing_subjects.INVOICE_PAID, billing_subjects.INVOICE_FAILED,
                billing_subjects.SET_SPEND_LIMIT, RUN_SUBJECT, HEALTH_SUBJECT,
                rate_limit_subjects.SET_RATE_LIMITS, rate_limit_subjects.GET_RATE_LIMITS,
                *generation_limit_subjects.ALL,
                *(f"ops.{q.name}" for q in QUERIES if q.operators)]


@pytest.fixture
async def rt(runtime_factory: RuntimeFactory) -> AsyncIterator[Runtime]:
    async with runtime_factory(extra_parts=serve_parts()) as r:
        yield r


async def last_seq(rt: Runtime) -> int:
    return await rt.store.last_seq()


async def no_reply(conn: RoleConnection, subject: str, body: dict[str, Any]) -> None:
    """The request gets no answer: the server dropped it (a permissions violation)."""
    with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
        await conn.nc.request(subject, json.dumps(body).encode(), timeout=0.5)
    await conn.violation(subject)


async def test_anonymous_and_foreign_credentials_are_refused(nats_server: EmbeddedNats,
                                                             tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await nats.connect(nats_server.url, max_reconnect_attempts=0, allow_reconnect=False,
                           connect_timeout=2)
    stranger = NatsAuth.ensure(tmp_path / "other-operator")
    creds = stranger.write_creds("service", "svc", tmp_path / "stranger.creds")
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await nats.connect(nats_server.url, user_credentials=str(creds),
                           max_reconnect_attempts=0, allow_reconnect=False, connect_timeout=2)


async def test_a_user_cannot_publish_on_another_users_subjects(
        rt: Runtime, connect_as: ConnectAs) -> None:
    alice = await connect_as("user", "alice")
    before = await last_seq(rt)
    await asyncio.gather(*(no_reply(alice, s.replace("{user_id}", "bob"),
                                    {"command_id": new_id(), "user_id": "bob"})
                           for s in USER_SUBJECTS))
    assert await last_seq(rt) == before


async def test_a_payload_naming_another_user_is_forbidden_on_every_subject(
        rt: Runtime, connect_as: ConnectAs) -> None:
    bob = Client(rt.nc, user_id="bob")
    tid = (await bob.create_thread(title="bob's")).value["thread_id"]
    alice = await connect_as("user", "alice")
    before = await last_seq(rt)

    async def forbidden(subject: str) -> None:
        body = {"command_id": new_id(), "user_id": "bob", "thread_id": tid}
        msg = await alice.nc.request(subject.replace("{user_id}", "alice"),
                                     json.dumps(body).encode(), timeout=10)
        reply = json.loads(msg.data)
        assert reply["ok"] is False and reply["error"]["code"] == "forbidden", (subject, reply)

    await asyncio.gather(*(forbidden(s) for s in USER_SUBJECTS))
    assert await last_seq(rt) == before
    assert alice.errors == []


async def test_a_user_cannot_read_or_change_another_users_thread(
        rt: Runtime, connect_as: ConnectAs) -> None:
    bob = Client(rt.nc, user_id="bob")
    tid = (await bob.create_thread(title="private")).value["thread_id"]
    saved = await bob.save_message(tid, "user", "bob's secret")
    alice = Client((await connect_as("user", "alice")).nc, user_id="alice")
    before = await last_seq(rt)
    for call in (alice.save_message(tid, "user", "forged"),
                 alice.update_thread(tid, title="mine now"),
                 alice.delete_thread(tid),
                 alice.query("query.messages.list", thread_id=tid, min_seq=saved.seq),
                 alice.query("query.threads.get", thread_id=tid, min_seq=saved.seq)):
        with pytest.raises(Exception) as ei:
            await call
        assert getattr(ei.value, "code", None) == "forbidden", ei.value
    assert await last_seq(rt) == before


@pytest.mark.parametrize("role", ["user", "app"])
async def test_only_operators_reach_ops_subjects(rt: Runtime, connect_as: ConnectAs,
                                                 role: str) -> None:
    conn = await connect_as(role, f"{role}1")
    before = await last_seq(rt)
    await asyncio.gather(*(no_reply(conn, s, {"command_id": new_id(), "user_id": f"{role}1",
                                              "sql": "SELECT 1", "limit_usd": 0,
                                              "period": "2026-01"})
                           for s in OPS_SUBJECTS))
    assert await last_seq(rt) == before


@pytest.mark.parametrize("role", ["user", "app", "operator"])
async def test_no_role_but_the_service_writes_the_log_its_buckets_or_streams(
        rt: Runtime, connect_as: ConnectAs, role: str) -> None:
    conn = await connect_as(role, f"{role}2")
    stream, before = rt.store.stream, await last_seq(rt)
    forged = json.dumps({"type": "message_saved", "user_id": "bob", "data": {}}).encode()
    await conn.nc.publish("events.thread.t1.message_saved", forged)
    await conn.nc.publish(f"$KV.{stream}_commands.somecommand", b'{"ok": false}')
    await conn.nc.publish("sig.agent.abort.t1.m1", b"{}")
    await conn.nc.publish("live.bob.deltas.t1.m1", b'{"text": "forged"}')
    for api in (f"$JS.API.STREAM.DELETE.{stream}", f"$JS.API.STREAM.UPDATE.{stream}",
                f"$JS.API.STREAM.PURGE.{stream}", f"$JS.API.STREAM.MSG.DELETE.{stream}",
                f"$JS.API.CONSUMER.CREATE.{stream}", "$JS.API.INFO"):
        await no_reply(conn, api, {"seq": 1})
    for subject in ("events.thread.t1.message_saved", f"$KV.{stream}_commands.somecommand",
                    "sig.agent.abort.t1.m1", "live.bob.deltas.t1.m1"):
        await conn.violation(subject)
    info = await rt.nc.jetstream().stream_info(stream)
    assert info.state.last_seq == before


async def test_a_user_cannot_eavesdrop(rt: Runtime, connect_as: ConnectAs) -> None:
    alice = await connect_as("user", "alice")
    heard: list[str] = []

    async def hear(msg: Any) -> None:
        heard.append(msg.subject)

    forbidden = [">", "events.>", "live.>", "live.bob.>", "live.*.deltas.>", "cmd.>",
                 "cmd.bob.>", "query.>", "ops.>", "_INBOX.>", "_INBOX.u.bob.>", "$KV.>",
                 "$JS.>", "sig.>"]
    for subject in forbidden:
        await alice.nc.subscribe(subject, cb=hear)
    await alice.nc.flush()
    for subject in forbidden:
        await alice.violation(subject)
    bob = Client(rt.nc, user_id="bob")
    tid = (await bob.create_thread(title="bob")).value["thread_id"]
    saved = await bob.save_message(tid, "user", "words for bob only")
    await bob.query("query.messages.list", thread_id=tid, min_seq=saved.seq)
    await alice.nc.flush()
    assert heard == []


async def test_a_user_follows_its_own_threads_live_and_no_one_elses(
        rt: Runtime, connect_as: ConnectAs) -> None:
    alice_conn = await connect_as("user", "alice")
    got: asyncio.Queue[Any] = asyncio.Queue()
    await alice_conn.nc.subscribe("live.alice.>", cb=got.put)
    await alice_conn.nc.flush()
    app = Client((await connect_as("app", "backend")).nc, user_id="bob")
    await app.create_thread(title="bob's, via the app")
    alice = Client(alice_conn.nc, user_id="alice")
    tid = (await alice.create_thread(title="alice's")).value["thread_id"]
    msg = await asyncio.wait_for(got.get(), 10)
    assert msg.subject == f"live.alice.thread.{tid}.thread_created"
    assert json.loads(msg.data)["user_id"] == "alice"
    assert got.empty()


async def test_an_app_acts_for_any_user_and_an_operator_reads_status_with_paths(
        rt: Runtime, connect_as: ConnectAs) -> None:
    app = Client((await connect_as("app", "backend")).nc, user_id="carol")
    res = await app.create_thread(title="for carol")
    listed = await app.query("query.threads.list", min_seq=res.seq)
    assert [t["user_id"] for t in listed.value["items"]] == ["carol"]
    op = Client((await connect_as("operator", "ops")).nc, user_id="ops")
    full = await op.request("ops.status", {"user_id": "ops"})
    assert "db_path" in full.value
    user = Client((await connect_as("user", "carol")).nc, user_id="carol")
    own = await user.query("query.status")
    assert "db_path" not in own.value and own.value["checkpoint"] >= 0
    rows = await op.request("ops.sql", {"user_id": "ops", "sql": "SELECT count(*) FROM threads",
                                        "min_seq": res.seq})
    assert rows.value["rows"][0][0] >= 1


ACTIONS = st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["thread", "message"])),
                   min_size=1, max_size=8)


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=ACTIONS)
async def test_a_user_connection_never_receives_another_users_row_or_event(
        rt: Runtime, connect_as: ConnectAs, plan: list[tuple[int, str]]) -> None:
    run = new_id()[:8]
    users = [f"u{i}x{run}" for i in range(4)]
    live: dict[str, list[Any]] = {u: [] for u in users}
    arrived = asyncio.Event()
    conns = {u: await connect_as("user", u) for u in users}

    def collect(u: str) -> Any:
        async def cb(msg: Any) -> None:
            live[u].append(msg)
            arrived.set()
        return cb

    for u, conn in conns.items():
        await conn.nc.subscribe(f"live.{u}.>", cb=collect(u))
        await conn.nc.flush()
    app = (await connect_as("app", f"app{run}")).nc
    threads: dict[str, list[str]] = {u: [] for u in users}
    last = 0
    for i, kind in plan:
        client = Client(app, user_id=users[i])
        if kind == "thread" or not threads[users[i]]:
            res = await client.create_thread(title=f"t of {users[i]}")
            threads[users[i]].append(res.value["thread_id"])
        else:
            res = await client.save_message(threads[users[i]][-1], "user", f"m {users[i]}")
        last = max(last, res.seq or 0)
    for u in users:
        mine = Client(conns[u].nc, user_id=u)
        listed = await mine.query("query.threads.list", min_seq=last, limit=100)
        assert {t["user_id"] for t in listed.value["items"]} <= {u}
        assert {t["thread_id"] for t in listed.value["items"]} == set(threads[u])
        for other in users:
            for tid in threads[other] if other != u else []:
                with pytest.raises(Exception) as ei:
                    await mine.query("query.messages.list", thread_id=tid)
                assert getattr(ei.value, "code", None) == "forbidden"
    def created(u: str) -> int:
        return sum(m.subject.endswith(".thread_created") for m in live[u])

    while True:  # event-driven, bounded
        arrived.clear()
        if all(created(u) >= len(threads[u]) for u in users):
            break
        await asyncio.wait_for(arrived.wait(), 10)
    for u in users:
        assert all(json.loads(m.data)["user_id"] == u and m.subject.startswith(f"live.{u}.")
                   for m in live[u])
        assert created(u) == len(threads[u])
    assert all(conn.errors == [] for conn in conns.values())



async def test_a_reply_subject_cannot_make_the_service_write_the_log_or_call_the_api(
        rt: Runtime, connect_as: ConnectAs) -> None:
    """Confused deputy: the service answers on the request's reply subject, which the
    requester chooses. A reply subject outside ``_INBOX.`` gets no answer (and the
    request is not served), so it cannot delete a stream or forge an event."""
    alice = await connect_as("user", "alice")
    stream, before = rt.store.stream, await last_seq(rt)
    seen = LogWatch()
    logging.getLogger("handlers").addHandler(seen)
    logging.getLogger("projections").addHandler(seen)
    try:
        traps = [f"$JS.API.STREAM.DELETE.{stream}", "events.thread.t9.message_saved",
                 f"$KV.{stream}_commands.x", "sig.agent.abort.t9.m9"]
        for trap in traps:
            await alice.nc.publish("cmd.alice.thread.create",
                                   json.dumps({"command_id": new_id()}).encode(), reply=trap)
            await alice.nc.publish("query.alice.threads.list", b"{}", reply=trap)
        await alice.nc.flush()
        await seen.wait_for("reply subject", 2 * len(traps))
    finally:
        logging.getLogger("handlers").removeHandler(seen)
        logging.getLogger("projections").removeHandler(seen)
    info = await rt.nc.jetstream().stream_info(stream)
    assert info.state.last_seq == before
    assert alice.errors == []
