"""Red team: attacks on the trust boundary by a *user*, an *app* and an *operator*
credential, over a real nats-server with auth on (the session's ``nats_server``).

Each test asserts the attack FAILS (a permissions violation from the server, or a
``forbidden``/``not_found``/``invalid_input`` reply, and nothing appended). An attack that
currently SUCCEEDS is marked ``xfail(strict=True)`` with what leaks, so the suite stays
green and the test starts failing (XPASS) once the hole is fixed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest

from events import derived_id, new_id
from events.errors import InvalidId, ThreadlogError
from handlers.agents.definition import Agent
from handlers.client import Client
from handlers.llm.call_settings import NO_BACKOFF, CallSettings
from handlers.llm.scripted import Reply as Scripted
from handlers.llm.scripted import scripted
from tests.conftest import ConnectAs, LogWatch, RoleConnection, RuntimeFactory
from threadlog.embedded_nats import EmbeddedNats
from threadlog.nats_auth import NatsAuth
from threadlog.parts import serve_parts
from threadlog.runtime import Runtime

NEGATIVE_WAIT_S = 1.0
"""A bounded wait for something that must NOT arrive (only after a flush and after the
service has provably handled the request, or where no positive signal exists)."""


@pytest.fixture
async def rt(runtime_factory: RuntimeFactory) -> AsyncIterator[Runtime]:
    model = "r" + new_id()[:8]
    scripted.reset(model)
    agent = Agent(name="clerk", model=f"scripted/{model}",
                  call_settings=CallSettings(max_retries=1, backoff=NO_BACKOFF))
    async with runtime_factory(extra_parts=serve_parts(), agents=[agent]) as r:
        r.parts["model"] = model
        yield r


async def last_seq(rt: Runtime) -> int:
    return await rt.store.last_seq()


async def ask(conn: RoleConnection | Any, subject: str, body: dict[str, Any],
              timeout: float = 10.0, headers: dict[str, str] | None = None) -> dict[str, Any]:
    nc = conn.nc if isinstance(conn, RoleConnection) else conn
    msg = await nc.request(subject, json.dumps(body).encode(), timeout=timeout,
                           headers=headers)
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


def code(reply: dict[str, Any]) -> str | None:
    return None if reply.get("ok") else reply["error"]["code"]


async def nothing_arrives(q: asyncio.Queue[Any]) -> None:
    """Negative check: bounded wait (NEGATIVE_WAIT_S), nothing may arrive."""
    with pytest.raises(TimeoutError):
        msg = await asyncio.wait_for(q.get(), NEGATIVE_WAIT_S)
        raise AssertionError(f"received {msg.subject}: {msg.data[:200]!r}")



# --------------------------------------------------------------------- reply subjects
async def test_a_reply_subject_in_another_users_inbox_is_not_answered(
        rt: Runtime, connect_as: ConnectAs) -> None:
    bob = await connect_as("user", "bob")
    heard: asyncio.Queue[Any] = asyncio.Queue()
    await bob.nc.subscribe("_INBOX.u.bob.>", cb=heard.put)
    await bob.nc.flush()
    alice = await connect_as("user", "alice")
    # alice cannot publish there herself...
    await alice.nc.publish("_INBOX.u.bob.spoof", b'{"ok": true, "result": "forged"}')
    await alice.violation("_INBOX.u.bob.spoof")
    # ...but the service answers her request there on her behalf
    await alice.nc.publish("query.alice.threads.list", b"{}", reply="_INBOX.u.bob.spoof")
    await alice.nc.flush()
    await nothing_arrives(heard)


async def test_a_reply_subject_on_live_or_ops_subjects_is_not_served(
        rt: Runtime, connect_as: ConnectAs) -> None:
    bob = await connect_as("user", "bob")
    heard: asyncio.Queue[Any] = asyncio.Queue()
    await bob.nc.subscribe("live.bob.>", cb=heard.put)
    await bob.nc.flush()
    alice = await connect_as("user", "alice")
    before = await last_seq(rt)
    seen = LogWatch()
    for name in ("handlers", "projections"):
        logging.getLogger(name).addHandler(seen)
    try:
        traps = ["live.bob.thread.t1.thread_created", "live.bob.deltas.t1.m1",
                 "ops.budget.set", "cmd.bob.thread.delete", "_INBOX", "_INBOXES.x", "$JS.FC.x.y.z"]
        for trap in traps:
            await alice.nc.publish("cmd.alice.thread.create",
                                   json.dumps({"command_id": new_id()}).encode(), reply=trap)
        await alice.nc.flush()
        await seen.wait_for("reply subject", len(traps))
    finally:
        for name in ("handlers", "projections"):
            logging.getLogger(name).removeHandler(seen)
    # A reply on a JetStream ack/flow-control subject is refused by the server itself.
    reserved = "$JS.ACK.x.y.1.1.1.1.0"
    await alice.nc.publish("cmd.alice.thread.create", b"{}", reply=reserved)
    await alice.violation(f'publish with reply of "{reserved}"')
    assert await last_seq(rt) == before
    assert heard.empty()


# --------------------------------------------------------------------- subject tokens
async def test_a_user_cannot_publish_wildcards_or_other_users_tokens(
        rt: Runtime, connect_as: ConnectAs) -> None:
    alice = await connect_as("user", "alice")
    before = await last_seq(rt)
    subjects = ["cmd.*.thread.create", "cmd.>", "query.*.threads.list", "query.>",
                "cmd.alice2.thread.create", "cmd.alic.thread.create", "cmd.ALICE.thread.create",
                "cmd.alice\u0301.thread.create", "cmd.$alice.thread.create"]
    for s in subjects:
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await alice.nc.request(s, b'{"command_id": "c1"}', timeout=0.5)
    for s in subjects:
        await alice.violation(s)
    assert await last_seq(rt) == before


@pytest.mark.parametrize("role", ["app", "operator"])
async def test_a_wildcard_user_token_from_a_privileged_role_acts_for_no_one(
        rt: Runtime, connect_as: ConnectAs, role: str) -> None:
    """An app may publish ``cmd.*.>``: the literal ``*`` in the user position reaches the
    handlers' ``cmd.*.x`` subscriptions; it must not become a user (or all users)."""
    bob = rt.client("bob")
    await bob.create_thread(title="bob's")
    conn = await connect_as(role, f"{role}w")
    before = await last_seq(rt)
    subjects = (["cmd.*.thread.delete", "cmd.*.user.delete"] if role == "operator"
                else ["cmd.*.thread.create", "cmd.*.user.delete", "cmd.*.messages.save"])
    for s in subjects:
        reply = await ask(conn, s, {"command_id": new_id(), "thread_id": "x"})
        assert code(reply) == "invalid_input", (s, reply)
    for q in ("query.*.threads.list", "query.*.messages.search", "query.*.status"):
        reply = await ask(conn, q, {"text": "bob", "all_threads": True})
        assert code(reply) == "invalid_input", (q, reply)
    assert await last_seq(rt) == before


async def test_credential_names_with_subject_syntax_cannot_be_issued(tmp_path: Path) -> None:
    auth = NatsAuth.ensure(tmp_path / "auth")
    for name in ("a.b", "*", ">", "al ice", "al$ce", "\u00e1lice", "x" * 129, ""):
        with pytest.raises((ValueError, InvalidId)):
            auth.issue("user", name)


async def test_a_tampered_credential_naming_another_user_is_refused(
        nats_server: EmbeddedNats, tmp_path: Path) -> None:
    creds = nats_server.issue("user", "alice", tmp_path / "alice.creds").read_text()
    jwt = creds.split("-----BEGIN NATS USER JWT-----\n")[1].split("\n")[0]
    head, body, sig = jwt.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["name"] = "bob"
    forged_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    forged = tmp_path / "bob.creds"
    forged.write_text(creds.replace(jwt, f"{head}.{forged_body}.{sig}"))
    with pytest.raises(Exception, match=r"(?i)authoriz"):
        await nats.connect(nats_server.url, user_credentials=str(forged),
                           max_reconnect_attempts=0, allow_reconnect=False, connect_timeout=2)


# --------------------------------------------------------------------- subscriptions
@pytest.mark.parametrize("role", ["user", "app", "operator"])
async def test_no_role_can_join_the_service_queue_groups(
        rt: Runtime, connect_as: ConnectAs, role: str) -> None:
    conn = await connect_as(role, f"{role}q")
    stolen: list[Any] = []

    async def steal(msg: Any) -> None:
        stolen.append(msg)

    subs = [("cmd.*.thread.create", "threadlog-handlers"),
            (f"cmd.{role}q.thread.create", "threadlog-handlers"),
            ("query.*.threads.list", "projector"),
            (f"query.{role}q.threads.list", "projector"),
            ("ops.invoices.run", "threadlog-invoices"), ("ops.sql", "projector"),
            ("sig.agent.abort.>", None), ("events.thread.>", None),
            ("_INBOX.s.threadlog.>", None), ("_INBOX.u.bob.>", None),
            ("$JS.API.>", None), ("$JS.ACK.>", None), ("$KV.>", None)]
    for subject, queue in subs:
        await conn.nc.subscribe(subject, queue=queue or "", cb=steal)
    await conn.nc.flush()
    for subject, _ in subs:
        await conn.violation(subject)
    client = rt.client(f"{role}q")
    res = await client.create_thread(title="still served by threadlog")
    await client.query("query.threads.list", min_seq=res.seq)
    await conn.nc.flush()
    assert stolen == []


@pytest.mark.parametrize("role", ["user", "app", "operator"])
async def test_no_role_reaches_the_jetstream_api_directly(
        rt: Runtime, connect_as: ConnectAs, role: str) -> None:
    conn = await connect_as(role, f"{role}js")
    stream = rt.store.stream
    apis = [f"$JS.API.DIRECT.GET.{stream}", f"$JS.API.DIRECT.GET.{stream}.events.thread.>",
            f"$JS.API.STREAM.MSG.GET.{stream}", f"$JS.API.STREAM.INFO.{stream}",
            "$JS.API.STREAM.LIST", f"$JS.API.CONSUMER.LIST.{stream}",
            f"$JS.API.CONSUMER.CREATE.{stream}.x.events.>", "$JS.ACK.x.y.1.1.1.1.0",
            "$JS.FC.x.y.z", f"$KV.{stream}_commands.bob.x", f"$JS.API.STREAM.INFO.KV_{stream}_commands"]
    for api in apis:
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await conn.nc.request(api, b'{"seq": 1, "last_by_subj": "events.thread.>"}',
                                  timeout=0.5)
    for api in apis:
        await conn.violation(api)


async def test_an_operator_cannot_write_user_data(rt: Runtime, connect_as: ConnectAs) -> None:
    op = await connect_as("operator", "ops")
    before = await last_seq(rt)
    for s in ("cmd.bob.thread.create", "cmd.bob.messages.save", "cmd.bob.agent.generate",
              "cmd.bob.agent.abort", "cmd.bob.agent.approval", "cmd.bob.canvas.edit",
              "cmd.bob.thread.update", "events.thread.t.message_saved"):
        await op.nc.publish(s, json.dumps({"command_id": new_id()}).encode())
    await op.nc.flush()
    for s in ("cmd.bob.thread.create", "cmd.bob.messages.save", "cmd.bob.agent.generate",
              "cmd.bob.canvas.edit", "events.thread.t.message_saved"):
        await op.violation(s)
    assert await last_seq(rt) == before


# --------------------------------------------------------------------- headers
async def test_request_headers_do_not_reach_the_log(rt: Runtime, connect_as: ConnectAs) -> None:
    """JetStream headers on a command (dedupe id, expected sequences, rollup) are not
    forwarded to the append: they can neither drop nor reject a write."""
    alice = await connect_as("user", "alice")
    before = await last_seq(rt)
    headers = {"Nats-Msg-Id": "fixed", "Nats-Expected-Last-Sequence": "1",
               "Nats-Expected-Last-Subject-Sequence": "999999",
               "Nats-Expected-Stream": "NOPE", "Nats-Rollup": "all",
               "Nats-Batch-Id": "b", "Nats-Batch-Commit": "1",
               "correlation_id": "bob-corr", "reply_to": "_INBOX.u.bob.x"}
    tids = []
    for _ in range(2):
        reply = await ask(alice, "cmd.alice.thread.create", {"command_id": new_id()},
                          headers=headers)
        assert reply["ok"], reply
        tids.append(reply["result"]["thread_id"])
    assert await last_seq(rt) == before + 2
    listed = await Client(alice.nc, user_id="alice").query(
        "query.threads.list", min_seq=before + 2, limit=500)
    assert set(tids) <= {t["thread_id"] for t in listed.value["items"]}


async def test_another_users_command_id_cannot_swallow_my_append(
        rt: Runtime, connect_as: ConnectAs) -> None:
    alice = Client((await connect_as("user", "alice")).nc, user_id="alice")
    bob = Client((await connect_as("user", "bob")).nc, user_id="bob")
    shared = "cid-" + new_id()[:8]  # e.g. a client-side idempotency key both derive alike
    await alice.create_thread(title="alice first", command_id=shared)
    before = await last_seq(rt)
    res = await bob.create_thread(title="bob second", command_id=shared)
    assert await last_seq(rt) == before + 1, "bob's thread_created was deduplicated away"
    listed = await bob.query("query.threads.list", min_seq=res.seq)
    assert [t["thread_id"] for t in listed.value["items"]] == [res.value["thread_id"]]


# --------------------------------------------------------------------- ownership by id
async def test_ids_of_another_users_thread_are_refused_everywhere(
        rt: Runtime, connect_as: ConnectAs) -> None:
    bob = rt.client("bob")
    btid = (await bob.create_thread(title="bob")).value["thread_id"]
    bmsg = (await bob.save_message(btid, "user", "bob secret")).value["messages"][0]["message_id"]
    canvas = await ask(rt.nc, "cmd.bob.canvas.create",
                       {"command_id": new_id(), "thread_id": btid,
                        "document": {"elements": {"e1": {"type": "note", "text": "bob canvas"}}}})
    assert canvas["ok"], canvas
    cid = canvas["result"]["canvas_id"]
    alice_conn = await connect_as("user", "alice")
    alice = Client(alice_conn.nc, user_id="alice")
    atid = (await alice.create_thread(title="alice")).value["thread_id"]
    before = await last_seq(rt)

    def body(**kw: Any) -> dict[str, Any]:
        return {"command_id": new_id(), **kw}

    expect = [
        ("cmd.alice.messages.save", body(thread_id=atid, messages=[
            {"role": "assistant", "content": "x", "prompt_message_id": bmsg}]), "not_found"),
        ("cmd.alice.agent.generate", body(agent="clerk", thread_id=atid,
                                          prompt_message_id=bmsg), "not_found"),
        ("cmd.alice.agent.generate", body(agent="clerk", thread_id=btid, prompt="hi"),
         "forbidden"),
        ("cmd.alice.agent.approval", body(thread_id=btid, tool_call_id="c1", approved=True),
         "forbidden"),
        ("cmd.alice.agent.approval", body(thread_id=atid, tool_call_id="c1", approved=True),
         "not_found"),
        ("cmd.alice.agent.abort", body(thread_id=btid, message_id=bmsg), "forbidden"),
        ("cmd.alice.agent.abort", body(thread_id=atid, message_id=bmsg), "not_found"),
        ("cmd.alice.canvas.edit", body(canvas_id=cid, base_version=0, ops=[
            {"op": "replace", "path": "/elements/e1/text", "value": "mine"}]), "forbidden"),
        ("cmd.alice.canvas.revert", body(canvas_id=cid, version=1), "forbidden"),
        ("cmd.alice.canvas.get", {"canvas_id": cid}, "forbidden"),
        ("cmd.alice.canvas.history", {"canvas_id": cid}, "forbidden"),
        ("cmd.alice.canvas.create", body(thread_id=atid, canvas_id=cid), "already_exists"),
        ("cmd.alice.canvas.create", body(thread_id=btid), "forbidden"),
        ("cmd.alice.thread.create", body(thread_id=btid), "already_exists"),
        ("cmd.alice.deletion.pending", body(thread_id=btid), None),
    ]
    for subject, b, want in expect:
        reply = await ask(alice_conn, subject, b)
        if want is None:
            assert reply["ok"] and reply["result"]["pending"] == [], (subject, reply)
        else:
            assert code(reply) == want, (subject, reply)
    assert await last_seq(rt) == before
    got = await ask(rt.nc, "cmd.bob.canvas.get", {"canvas_id": cid})
    assert got["result"]["document"]["elements"]["e1"]["text"] == "bob canvas"
    assert alice_conn.errors == []


async def test_queries_never_return_another_users_rows(
        rt: Runtime, connect_as: ConnectAs, tmp_path: Path) -> None:
    bob = rt.client("bob")
    btid = (await bob.create_thread(title="zebraword")).value["thread_id"]
    saved = await bob.save_messages(btid, [{
        "role": "user", "content": "zebraword secret of bob",
        "embedding": {"model": "m1", "vector": [1.0, 0.0, 0.0]}}])
    bmsg = saved.value["messages"][0]["message_id"]
    alice = Client((await connect_as("user", "alice")).nc, user_id="alice")
    await alice.create_thread(title="alice")
    found = await alice.query("query.messages.search", min_seq=saved.seq, text="zebraword",
                              all_threads=True, limit=100)
    assert found.value.get("hits", found.value.get("items", [])) == [], found.value
    vec = await alice.query("query.messages.search", min_seq=saved.seq, vector=[1.0, 0.0, 0.0],
                            model="m1", all_threads=True)
    assert "zebraword" not in json.dumps(vec.value)
    with pytest.raises(Exception) as ei:
        await alice.query("query.messages.get", message_ids=[bmsg])
    assert getattr(ei.value, "code", None) == "forbidden"
    with pytest.raises(Exception) as ei:
        await alice.query("query.messages.search", text="zebraword", thread_id=btid)
    assert getattr(ei.value, "code", None) == "forbidden"
    listed = await alice.query("query.threads.list", limit=500)
    assert "zebraword" not in json.dumps(listed.value)
    usage = await alice.query("query.usage.summary")
    budget = await alice.request("query.budget.status", {})
    status = await alice.query("query.status")
    text = json.dumps([usage.value, budget.value, status.value])
    assert "bob" not in text and "zebraword" not in text
    assert str(tmp_path) not in text and str(rt.settings.data_dir) not in text


# --------------------------------------------------------------------- message-id collisions
async def test_saving_another_users_message_id_does_not_touch_their_message(
        rt: Runtime, connect_as: ConnectAs) -> None:
    bob = Client((await connect_as("user", "bob")).nc, user_id="bob")
    btid = (await bob.create_thread()).value["thread_id"]
    mid = "m" + new_id()  # a message id bob chose (or one alice has seen)
    await bob.save_messages(btid, [{"message_id": mid, "role": "user", "content": "bob's"}])
    alice = Client((await connect_as("user", "alice")).nc, user_id="alice")
    atid = (await alice.create_thread()).value["thread_id"]
    res = await alice.save_messages(atid, [{"message_id": mid, "role": "user",
                                            "content": "alice's"}])
    listed = await bob.query("query.messages.list", thread_id=btid, min_seq=res.seq)
    assert [m["text"] for m in listed.value["items"]] == ["bob's"]


async def test_finalizing_my_message_cannot_patch_another_users_message(
        rt: Runtime, connect_as: ConnectAs) -> None:
    mid = "m" + new_id()
    alice = Client((await connect_as("user", "alice")).nc, user_id="alice")
    atid = (await alice.create_thread()).value["thread_id"]
    await alice.save_messages(atid, [{"message_id": mid, "role": "assistant", "content": "",
                                      "status": "pending"}])
    bob = Client((await connect_as("user", "bob")).nc, user_id="bob")
    btid = (await bob.create_thread()).value["thread_id"]
    await bob.save_messages(btid, [{"message_id": mid, "role": "user", "content": "bob's"}])
    res = await alice.abort(atid, mid, reason="ALICE WAS HERE")
    listed = await bob.query("query.messages.list", thread_id=btid, min_seq=res.seq)
    (row,) = listed.value["items"]
    assert (row["status"], row.get("error")) == ("success", None), row


async def test_aborting_my_message_cannot_stop_another_users_generation(
        rt: Runtime, connect_as: ConnectAs) -> None:
    scripted.script(rt.parts["model"], [Scripted.hanging(after_text="bob's partial words ")])
    bob_conn = await connect_as("user", "bob")
    bob = Client(bob_conn.nc, user_id="bob", timeout=30)
    btid = (await bob.create_thread()).value["thread_id"]
    deltas: asyncio.Queue[Any] = asyncio.Queue()
    await bob_conn.nc.subscribe(f"live.bob.deltas.{btid}.*", cb=deltas.put)
    await bob_conn.nc.flush()
    gen_cid = "gen-" + new_id()[:8]
    running = asyncio.ensure_future(bob.request("cmd.agent.generate", {
        "command_id": gen_cid, "agent": "clerk", "thread_id": btid, "prompt": "talk",
        "stream": True}, timeout=30))
    try:
        await asyncio.wait_for(deltas.get(), 10)  # bob's generation is in its model call
        bob_mid = derived_id("reply", gen_cid, "0")  # from bob's command id alone
        alice = Client((await connect_as("user", "alice")).nc, user_id="alice")
        atid = (await alice.create_thread()).value["thread_id"]
        await alice.save_messages(atid, [{"message_id": bob_mid, "role": "assistant",
                                          "content": "", "status": "pending"}])
        res = await alice.abort(atid, bob_mid)
        assert res.value["stopped_by"] == "abort", res.value  # her own orphan only
        assert not running.done()
    finally:
        if not running.done():  # stop bob's generation (it may be finishing already)
            with contextlib.suppress(Exception):
                await rt.client("bob").abort(btid, derived_id("reply", gen_cid, "0"))
        with pytest.raises(ThreadlogError) as ei:
            await asyncio.wait_for(running, 10)
        assert ei.value.code == "aborted"


# --------------------------------------------------------------------- exhaustion
async def test_a_users_min_seq_waits_do_not_block_another_users_reads(
        rt: Runtime, connect_as: ConnectAs) -> None:
    alice = await connect_as("user", "alice")
    far = 10**12
    body = json.dumps({"min_seq": far, "wait_s": 60.0}).encode()
    waits = [asyncio.ensure_future(alice.nc.request("query.alice.threads.list", body,
                                                    timeout=30))
             for _ in range(rt.settings.handler_concurrency + 16)]
    await alice.nc.flush()
    try:
        bob = Client((await connect_as("user", "bob")).nc, user_id="bob", timeout=2.5)
        listed = await bob.query("query.threads.list")
        assert listed.value["items"] == []
    finally:
        replies = [json.loads(m.data) for m in await asyncio.gather(*waits)]
        # a user may have a few reads waiting (timeout), the rest are refused at once
        assert {code(r) for r in replies} == {"timeout", "rate_limited"}


async def test_oversized_deep_or_non_finite_bodies_are_refused(
        rt: Runtime, connect_as: ConnectAs) -> None:
    alice = await connect_as("user", "alice")
    before = await last_seq(rt)
    deep = "[" * 5000 + "]" * 5000
    cases = [
        ("cmd.alice.thread.create", f'{{"command_id": "c1", "metadata": {{"x": {deep}}}}}'),
        ("query.alice.threads.list", f'{{"x": {deep}}}'),
        ("cmd.alice.thread.create", '{"command_id": "c2", "metadata": {"x": 1e999}}'),
        ("cmd.alice.thread.create", '{"command_id": "c3", "metadata": {"x": NaN}}'),
        ("query.alice.threads.list", '{"limit": 1000000000}'),
        ("query.alice.threads.list", '{"limit": "5"}'),
        ("query.alice.messages.get", json.dumps({"message_ids": ["m"] * 10_000})),
        ("cmd.alice.deletion.pending", '{"command_id": "c4", "wait_s": 1e9}'),
    ]
    for subject, raw in cases:
        msg = await alice.nc.request(subject, raw.encode(), timeout=10)
        reply = json.loads(msg.data)
        assert code(reply) in {"invalid_input", "invalid_json"}, (subject, reply)
    big = json.dumps({"command_id": "c5", "metadata": {"k": "x" * 1_000_000}}).encode()
    assert len(big) < alice.nc.max_payload
    for subject in ("cmd.alice.thread.create", "query.alice.threads.list"):
        reply = json.loads((await alice.nc.request(subject, big, timeout=10)).data)
        assert code(reply) == "payload_too_large", reply
    assert await last_seq(rt) == before
