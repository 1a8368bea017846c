"""Vector search widens the model's context with earlier messages that share no searchable
word with the prompt; embeddings are events (usage recorded, purged with the thread).

The scripted embedding is a hashed bag of every word, while text search only matches
words of 3+ letters: a prompt of short words ("is it at 6 am?") is invisible to text
search but close, as a vector, to an earlier message with those words."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from events import Aggregate, MessageEmbedded, ThreadlogError, UsageRecorded, new_id
from handlers.agents.definition import Agent, ContextOptions
from handlers.llm.call_settings import CallSettings
from handlers.llm.scripted import Reply, hash_embedding, scripted
from tests.conftest import RuntimeFactory
from threadlog.parts import serve_parts
from threadlog.runtime import Runtime

EMBEDDER = "scripted/emb-4096"  # wide: no hash collisions between these few words


@pytest.fixture
async def rt(runtime_factory: RuntimeFactory) -> AsyncIterator[Runtime]:
    model = "v" + new_id()[:8]
    scripted.reset()
    fast = CallSettings(max_retries=0)
    agents = [
        Agent(name=name, model=f"scripted/{model}", call_settings=fast,
              embedding_model=EMBEDDER,
              context_options=ContextOptions(recent_messages=1, search_messages=2,
                                             message_range=(0, 1), vector_search=vector))
        for name, vector in (("hybrid", True), ("text", False))]
    async with runtime_factory(agents=agents, extra_parts=serve_parts()) as r:
        r.parts["model"] = model
        yield r


def sent(rt: Runtime) -> list[str]:
    return [str(m["content"]) for m in scripted.requests(rt.parts["model"])[-1].messages]


async def test_vector_search_finds_what_text_search_cannot(rt: Runtime) -> None:
    c = rt.client("u1")
    tid = (await c.create_thread()).value["thread_id"]
    scripted.script(rt.parts["model"], [Reply.text("noted"), Reply.text("?"),
                                        Reply.text("yes")])
    await c.generate_text("hybrid", tid, "my flight to Oslo leaves at 6 am")
    for i in range(6):
        await c.save_message(tid, "user", f"unrelated chatter number {i}")
    await c.generate_text("text", tid, "so is it at 6 am?")
    assert "my flight to Oslo leaves at 6 am" not in sent(rt)  # no word of 3+ letters
    await c.generate_text("hybrid", tid, "so is it at 6 am?")
    context = sent(rt)
    assert "my flight to Oslo leaves at 6 am" in context
    assert "noted" in context  # the reply: same order as the hit
    assert "unrelated chatter number 0" in context  # the next order (message_range)
    assert "unrelated chatter number 1" not in context
    assert context[-1] == "so is it at 6 am?"


async def test_each_turn_is_searchable_by_the_next_one(rt: Runtime) -> None:
    """Read your writes: turn N's prompt and reply embeddings are in the same appends as
    the messages, and turn N+1's search waits for the projection to reach its prompt."""
    c = rt.client("u2")
    tid = (await c.create_thread()).value["thread_id"]
    for i in range(5):
        scripted.script(rt.parts["model"], [Reply.text(f"ok {i}")])
        await c.generate_text("hybrid", tid, f"{i} {i + 1} {i + 2} go")
        if i:
            assert f"{i - 1} {i} {i + 1} go" in sent(rt), i  # shares two short words
            assert f"ok {i - 1}" in sent(rt), i


async def test_embeddings_are_events_with_usage_and_go_with_the_thread(rt: Runtime
                                                                       ) -> None:
    c = rt.client("u3")
    tid = (await c.create_thread()).value["thread_id"]
    scripted.script(rt.parts["model"], [Reply.text("an answer")])
    reply = await c.generate_text("hybrid", tid, "a question")
    events = [e.event for e in await rt.store.read(Aggregate.thread(tid))]
    embedded = [e for e in events if isinstance(e, MessageEmbedded)]
    ids = reply.value["prompt_message_id"], reply.value["message_id"]
    assert [e.message_id for e in embedded] == list(ids)
    assert {(e.model, e.dimensions, len(e.vector)) for e in embedded} == {(EMBEDDER, 4096,
                                                                           4096)}
    usage = [e.event for e in await rt.store.read(Aggregate("usage", "u3"))]
    assert sorted(u.kind for u in usage) == ["completion", "embedding", "embedding"]
    assert all(u.model == EMBEDDER and u.usage.prompt_tokens > 0
               for u in usage if u.kind == "embedding")

    found = await c.query("query.messages.search", thread_id=tid, model=EMBEDDER,
                          vector=embedded[0].vector, min_seq=reply.seq)
    assert found.value["hits"][0] == ids[0]
    deleted = await c.delete_thread(tid)
    assert not [e for e in await rt.store.read(Aggregate.thread(tid))
                if isinstance(e.event, MessageEmbedded)]  # purged from the log
    rows = await c.query("ops.sql", min_seq=deleted.seq,
                         sql=f"SELECT count(*) AS n FROM message_embeddings "
                             f"WHERE thread_id = '{tid}'")
    assert rows.value["rows"] == [[0]]


async def test_a_resent_generation_embeds_nothing_twice(rt: Runtime) -> None:
    calls: list[UsageRecorded] = []
    rt.handlers.generator.agents.add(Agent(
        name="counted", model=f"scripted/{rt.parts['model']}", embedding_model=EMBEDDER,
        usage_handler=calls.append, call_settings=CallSettings(max_retries=0),
        context_options=ContextOptions(search_messages=2, vector_search=True)))
    c = rt.client("u4")
    tid = (await c.create_thread()).value["thread_id"]
    scripted.script(rt.parts["model"], [Reply.text("once")])
    body = {"agent": "counted", "thread_id": tid, "prompt": "hello there"}
    first = await c.command("cmd.agent.generate", command_id="gen-1", **body)
    again = await c.command("cmd.agent.generate", command_id="gen-1", **body)
    assert again.value == first.value
    events = [e.event for e in await rt.store.read(Aggregate.thread(tid))]
    assert sum(isinstance(e, MessageEmbedded) for e in events) == 2
    usage = [e.event for e in await rt.store.read(Aggregate("usage", "u4"))]
    assert [u.kind for u in usage].count("embedding") == 2
    assert [u.kind for u in calls] == ["embedding", "completion", "embedding"]  # no re-call


async def test_saved_messages_may_carry_their_embedding(rt: Runtime) -> None:
    c = rt.client("u6")
    tid = (await c.create_thread()).value["thread_id"]
    text = "we meet at 9 pm"
    await c.save_message(tid, "user", text, embedding={
        "model": EMBEDDER, "vector": hash_embedding(text, 4096)})
    await c.save_message(tid, "user", "unrelated chatter")
    scripted.script(rt.parts["model"], [Reply.text("9 pm")])
    await c.generate_text("hybrid", tid, "is it 9 pm?")
    assert text in sent(rt)
    with pytest.raises(ThreadlogError) as ei:
        await c.save_message(tid, "user", "x", embedding={"model": EMBEDDER, "vector": []})
    assert ei.value.code == "invalid_input"


def test_vector_search_without_an_embedding_model_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="embedding_model"):
        Agent(name="bad", model="scripted/x",
              context_options=ContextOptions(search_messages=3, vector_search=True))


async def test_a_vector_of_the_wrong_dimensions_is_invalid_input(rt: Runtime) -> None:
    c = rt.client("u5")
    tid = (await c.create_thread()).value["thread_id"]
    scripted.script(rt.parts["model"], [Reply.text("fine")])
    reply = await c.generate_text("hybrid", tid, "something to embed")
    with pytest.raises(ThreadlogError) as ei:
        await c.query("query.messages.search", thread_id=tid, model=EMBEDDER,
                      vector=[1.0] * 64, min_seq=reply.seq)
    assert ei.value.code == "invalid_input" and "4096" in ei.value.message
