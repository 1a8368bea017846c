"""The playground's lists: users and threads page and search; a thread's messages come
oldest first, with failed ones carrying their error."""

from __future__ import annotations

import httpx

from handlers.llm.scripted import Reply, scripted
from tests.threadlog.playground.conftest import PlaygroundFactory
from threadlog.runtime import Runtime


async def test_threads_page_by_cursor_and_search_filters_by_title(
        rt: Runtime, playground: PlaygroundFactory) -> None:
    carol = rt.client("carol")
    made = [await carol.create_thread(title=t) for t in ("Alpha trip", "Beta notes",
                                                          "Gamma trip")]
    tids = [m.value["thread_id"] for m in made]
    await carol.query("query.threads.list", min_seq=made[-1].seq)
    async with playground("user", "carol") as pg, httpx.AsyncClient(base_url=pg.url) as http:
        first = (await http.get("/api/users/carol/threads", params={"limit": 2})).json()
        assert [t["thread_id"] for t in first["result"]["items"]] == tids[:0:-1]
        cursor = first["result"]["next_cursor"]
        assert cursor
        second = (await http.get("/api/users/carol/threads",
                                  params={"limit": 2, "cursor": cursor})).json()
        assert [t["thread_id"] for t in second["result"]["items"]] == tids[:1]
        assert second["result"]["next_cursor"] is None
        found = (await http.get("/api/users/carol/threads", params={"search": "TRIP"})).json()
        assert [t["title"] for t in found["result"]["items"]] == ["Gamma trip", "Alpha trip"]
        res = await http.get("/api/users/carol/threads", params={"limit": 0})
        assert res.status_code == 400


async def test_operators_page_users_by_offset(rt: Runtime, playground: PlaygroundFactory
                                              ) -> None:
    names = ["pgusr-a", "pgusr-b", "pgusr-c"]
    seq = 0
    for n in names:
        seq = (await rt.client(n).create_thread()).seq or seq
    await rt.client(names[-1]).query("query.threads.list", min_seq=seq)
    async with playground("operator", "ops2") as pg, httpx.AsyncClient(base_url=pg.url) as http:
        page1 = (await http.get("/api/users", params={"search": "pgusr", "limit": 2})).json()
        assert [u["user_id"] for u in page1["result"]["items"]] == names[:2]
        page2 = (await http.get("/api/users", params={
            "search": "pgusr", "limit": 2, "offset": page1["result"]["next_offset"]})).json()
        assert [u["user_id"] for u in page2["result"]["items"]] == names[2:]
        assert page2["result"]["next_offset"] is None


async def test_messages_come_oldest_first_and_a_failed_one_carries_its_error(
        rt: Runtime, playground: PlaygroundFactory) -> None:
    dave = rt.client("dave")
    tid = (await dave.create_thread()).value["thread_id"]
    scripted.script(rt.parts["model"], [Reply.text("fine"),
                                        Reply.error(400, "the provider refused it")])
    await dave.generate_text("assistant", tid, "one")
    try:
        await dave.generate_text("assistant", tid, "two")
    except Exception as exc:  # the generation fails: its message stays, failed
        assert "refused" in str(exc)
    after = (await dave.update_thread(tid, title="after the failure")).seq
    async with playground("user", "dave") as pg, httpx.AsyncClient(base_url=pg.url) as http:
        res = (await http.get(f"/api/users/dave/threads/{tid}/messages",
                              params={"min_seq": after})).json()
        items = res["result"]["items"]
        assert [(m["order"], m["step_order"], m["role"]) for m in items] == [
            (0, 0, "user"), (0, 1, "assistant"), (1, 0, "user"), (1, 1, "assistant")]
        failed = items[-1]
        assert failed["status"] == "failed" and "refused" in failed["error"]
        assert res["result"]["thread"]["thread_id"] == tid
