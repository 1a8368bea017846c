"""The playground holds no privilege of its own: with a user's credentials it sees only
that user (the NATS server refuses the rest), with an operator's it browses every user
but cannot act for them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.threadlog.playground.conftest import PlaygroundFactory
from threadlog.runtime import Runtime


async def two_users(rt: Runtime) -> tuple[str, str]:
    """A thread of alice's and one of bob's, projected."""
    a = (await rt.client("alice").create_thread(title="Alice's plans")).value["thread_id"]
    created = await rt.client("bob").create_thread(title="Bob's secrets")
    await rt.client("bob").query("query.threads.list", min_seq=created.seq)
    return a, created.value["thread_id"]


async def test_a_user_playground_cannot_see_another_users_threads(
        rt: Runtime, playground: PlaygroundFactory) -> None:
    alice_tid, bob_tid = await two_users(rt)
    async with playground("user", "alice") as pg, httpx.AsyncClient(base_url=pg.url) as http:
        own = (await http.get("/api/users/alice/threads")).json()
        assert [t["thread_id"] for t in own["result"]["items"]] == [alice_tid]
        assert (await http.get("/api/users")).json()["result"]["items"] == [
            {"user_id": "alice"}]

        # bob's subjects: the NATS server refuses them for alice's connection
        res = await http.get("/api/users/bob/threads")
        assert res.status_code == 403 and res.json()["error"]["code"] == "forbidden"
        assert "query.bob.threads.list" in await pg.bridge.refused("query.bob.threads.list")
        res = await http.get(f"/api/users/bob/threads/{bob_tid}/messages")
        assert res.status_code == 403
        # bob's thread on alice's own subjects: the projector refuses it
        res = await http.get(f"/api/users/alice/threads/{bob_tid}/messages")
        assert res.status_code == 403 and res.json()["error"]["code"] == "forbidden"
        res = await http.post(f"/api/users/alice/threads/{bob_tid}/generate",
                              json={"agent": "assistant", "prompt": "leak it"})
        assert res.status_code == 403, res.text

        # bob's live subject: the server refuses the subscription, the stream says so
        async with http.stream("GET", "/api/users/bob/live") as live:
            lines = live.aiter_lines()
            assert await anext(lines) == "event: refused"
            assert '"code": "forbidden"' in await anext(lines)
        assert "live.bob.>" in await pg.bridge.refused("live.bob.>")
        async with http.stream("GET", "/api/users/alice/live") as live:
            assert await anext(live.aiter_lines()) == "event: ready"


async def test_an_operator_playground_lists_every_user_but_cannot_act_for_them(
        rt: Runtime, playground: PlaygroundFactory, browser: Any, artifacts: Path) -> None:
    _, bob_tid = await two_users(rt)
    async with playground("operator", "ops1") as pg, \
            httpx.AsyncClient(base_url=pg.url) as http:
        users = (await http.get("/api/users")).json()["result"]["items"]
        assert {"alice", "bob"} <= {u["user_id"] for u in users}
        found = (await http.get("/api/users", params={"search": "bo"})).json()
        assert [u["user_id"] for u in found["result"]["items"]] == ["bob"]
        res = await http.get("/api/users", params={"search": "x' OR 1=1 --"})
        assert res.status_code == 400 and res.json()["error"]["code"] == "invalid_input"
        threads = (await http.get("/api/users/bob/threads",
                                  params={"search": "secret"})).json()
        assert [t["thread_id"] for t in threads["result"]["items"]] == [bob_tid]
        msgs = await http.get(f"/api/users/bob/threads/{bob_tid}/messages")
        assert msgs.status_code == 200 and msgs.json()["result"]["items"] == []
        res = await http.post(f"/api/users/bob/threads/{bob_tid}/generate",
                              json={"agent": "assistant", "prompt": "as bob"})
        assert res.status_code == 403 and res.json()["error"]["code"] == "forbidden"
        assert "cmd.bob.agent.generate" in await pg.bridge.refused("cmd.bob.agent.generate")

        page = await browser.new_page(viewport={"width": 1400, "height": 700})
        await page.goto(pg.url)
        await page.wait_for_selector("body[data-ready='1']")
        assert await page.text_content("#whoami") == "operator ops1"
        await page.click("li[data-user='bob']")
        await page.wait_for_selector(f"li[data-thread='{bob_tid}']")
        await page.wait_for_selector("body[data-live='bob']")
        await page.click(f"li[data-thread='{bob_tid}']")
        await page.wait_for_selector("#thread-title:has-text(\"Bob's secrets\")")
        assert await page.is_hidden("#composer")  # an operator cannot send prompts
        assert await page.is_visible("#readonly-note")
        await page.screenshot(path=str(artifacts / "4-operator.png"), full_page=True)
        await page.close()


JSON = {"content-type": "application/json"}


async def test_bad_input_is_a_structured_400(rt: Runtime, playground: PlaygroundFactory
                                             ) -> None:
    async with playground("user", "alice") as pg, httpx.AsyncClient(base_url=pg.url) as http:
        res = await http.get("/api/users/al.ice/threads")
        assert res.status_code == 400 and res.json()["error"]["code"] == "invalid_id"
        res = await http.post("/api/users/alice/threads/t1/generate", content=b"[1]",
                              headers=JSON)
        assert res.status_code == 400 and res.json()["error"]["code"] == "invalid_json"
        res = await http.post("/api/users/alice/threads/t1/approval",
                              content=json.dumps({"tool_call_id": "x", "approved": "yes"}),
                              headers=JSON)
        assert res.status_code == 400 and res.json()["error"]["code"] == "invalid_input"


async def test_another_site_cannot_act_through_the_playground(
        rt: Runtime, playground: PlaygroundFactory) -> None:
    """A page of another site can make the browser send simple requests to the
    playground (a ``text/plain`` POST, no preflight), and a DNS-rebinding page reaches it
    under its own host name: all refused before anything is sent to NATS."""
    before = await rt.store.last_seq()
    async with playground("user", "alice") as pg, httpx.AsyncClient(base_url=pg.url) as http:
        body = json.dumps({"agent": "assistant", "prompt": "hi"})
        res = await http.post("/api/users/alice/threads/t1/generate", content=body,
                              headers={"content-type": "text/plain"})
        assert res.status_code == 400 and res.json()["error"]["code"] == "invalid_input"
        res = await http.post("/api/users/alice/threads/t1/generate", content=body,
                              headers={**JSON, "origin": "http://evil.example"})
        assert res.status_code == 403 and res.json()["error"]["code"] == "forbidden"
        res = await http.get("/api/users", headers={"host": "evil.example"})
        assert res.status_code == 400
        res = await http.post("/api/users/alice/threads", json={"title": "mine"},
                              headers={"origin": pg.url.rstrip("/")})
        assert res.status_code == 200, res.text  # the page's own origin is served
    assert await rt.store.last_seq() == before + 1  # only the page's own request appended
