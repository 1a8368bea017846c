"""Text search widens the model's context beyond the recent messages (read your writes:
the search waits for the projection to reach the thread's version)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from events import ThreadlogError, new_id
from handlers.agents.definition import Agent, ContextOptions
from handlers.llm.call_settings import CallSettings
from handlers.llm.scripted import Reply, scripted
from tests.conftest import RuntimeFactory
from threadlog.parts import serve_parts
from threadlog.runtime import Runtime


@pytest.fixture
async def rt(runtime_factory: RuntimeFactory) -> AsyncIterator[Runtime]:
    model = "s" + new_id()[:8]
    scripted.reset()
    fast = CallSettings(max_retries=0)
    agents = [
        Agent(name="finder", model=f"scripted/{model}", call_settings=fast,
              context_options=ContextOptions(recent_messages=2, search_messages=3,
                                             message_range=(0, 1))),
        Agent(name="wide", model=f"scripted/{model}", call_settings=fast,
              context_options=ContextOptions(recent_messages=1, search_messages=3,
                                             search_other_threads=True,
                                             message_range=(0, 0)))]
    async with runtime_factory(agents=agents, extra_parts=serve_parts()) as r:
        r.parts["model"] = model
        yield r


async def test_an_old_matching_message_and_its_neighbour_join_the_context(rt: Runtime
                                                                          ) -> None:
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    await c.save_message(tid, "user", "the secret word is pineapple")
    await c.save_message(tid, "assistant", "noted, I will remember it")
    for i in range(8):
        await c.save_message(tid, "user", f"unrelated chatter number {i}")
    scripted.script(rt.parts["model"], [Reply.text("pineapple")])
    await c.generate_text("finder", tid, "what was the secret word?")
    sent = [str(m["content"]) for m in scripted.requests(rt.parts["model"])[-1].messages]
    assert "the secret word is pineapple" in sent
    assert "noted, I will remember it" in sent  # the message after the hit
    assert "unrelated chatter number 0" not in sent
    # the recent window (2) holds the last chatter and the prompt itself
    assert sent[-2:] == ["unrelated chatter number 7", "what was the secret word?"]
    assert "unrelated chatter number 6" not in sent


async def test_search_across_the_users_other_threads_when_asked(rt: Runtime) -> None:
    c = rt.client("u2")
    other = (await c.create_thread()).value["thread_id"]
    await c.save_message(other, "user", "my favourite colour is turquoise")
    tid = (await c.create_thread()).value["thread_id"]
    scripted.script(rt.parts["model"], [Reply.text("turquoise")])
    await c.generate_text("wide", tid, "which favourite colour did I mention?")
    sent = [str(m["content"]) for m in scripted.requests(rt.parts["model"])[-1].messages]
    assert "my favourite colour is turquoise" in sent
    bob = rt.client("u3")
    found = await bob.query("query.messages.search", text="favourite colour turquoise",
                            all_threads=True)
    assert found.value["items"] == []  # another user's messages are never searched


async def test_search_of_another_users_thread_is_forbidden(rt: Runtime) -> None:
    created = await rt.client("alice").create_thread()
    with pytest.raises(ThreadlogError) as ei:
        await rt.client("bob").query("query.messages.search", text="anything words",
                                     thread_id=created.value["thread_id"], min_seq=created.seq)
    assert ei.value.code == "forbidden"
