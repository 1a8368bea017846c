"""query.messages.search with a vector: cosine ranking over message_embeddings, fused with
the text ranking by reciprocal rank fusion, and its input checks."""

from __future__ import annotations

from typing import Any

from events import Aggregate, EventStore, MessageEmbedded

from .conftest import Ask
from .factories import create_thread, save_message


async def embed(store: EventStore, user: str, thread: str, mid: str, vector: list[float],
                model: str = "emb") -> int:
    r = await store.append(Aggregate.thread(thread), [MessageEmbedded(
        message_id=mid, thread_id=thread, model=model, dimensions=len(vector),
        vector=vector)], user_id=user)
    return r.last_seq


async def search(ask: Ask, **body: Any) -> dict[str, Any]:
    r = await ask("messages.search", {"user_id": "alice", "before": 0, "after": 0, **body})
    assert r.ok, r.error
    result: dict[str, Any] = r.result
    return result


async def test_vector_hits_rank_by_similarity_and_fuse_with_text_hits(
        store: EventStore, ask: Ask) -> None:
    tid, _ = await create_thread(store, "alice")
    a, _ = await save_message(store, "alice", tid, 0, text="the report is due friday")
    b, _ = await save_message(store, "alice", tid, 1, text="notes about the budget")
    c, _ = await save_message(store, "alice", tid, 2, text="lunch on friday")
    await save_message(store, "alice", tid, 3, text="nothing to see")
    await embed(store, "alice", tid, a, [1.0, 0.0, 0.0])
    await embed(store, "alice", tid, b, [0.9, 0.1, 0.0])
    seq = await embed(store, "alice", tid, c, [0.0, 1.0, 0.0])
    base = {"thread_id": tid, "min_seq": seq, "model": "emb", "vector": [1.0, 0.0, 0.0]}

    only_vector = await search(ask, **base)
    assert only_vector["hits"] == [a, b, c]
    assert [r["similarity"] for r in only_vector["ranked"]][:2] == [1.0, 0.9938837289810181]

    # text ranks c (newest) then a; vector ranks a, b, c. RRF (k=60):
    # a = 1/62 + 1/61 > c = 1/61 + 1/63 > b = 1/62
    fused = await search(ask, text="friday", **base)
    assert fused["hits"] == [a, c, b]
    ranked = {r["message_id"]: r for r in fused["ranked"]}
    assert ranked[a]["found_by"] == ["text", "vector"]
    assert (ranked[a]["text_rank"], ranked[a]["vector_rank"]) == (2, 1)
    assert ranked[b]["found_by"] == ["vector"] and ranked[b]["text_rank"] is None
    assert abs(ranked[a]["score"] - (1 / 62 + 1 / 61)) < 1e-12
    assert {i["message_id"]: i["found_by"] for i in fused["items"]} == {
        a: ["text", "vector"], b: ["vector"], c: ["text", "vector"]}

    strict = await search(ask, text="friday", vector_score_threshold=0.5, **base)
    assert strict["hits"] == [a, c, b]
    assert {r["message_id"]: r["found_by"] for r in strict["ranked"]}[c] == ["text"]
    assert (await search(ask, limit=1, **base))["hits"] == [a]


async def test_neighbours_widen_vector_hits(store: EventStore, ask: Ask) -> None:
    tid, _ = await create_thread(store, "alice")
    mids = [(await save_message(store, "alice", tid, i, text=f"m{i}"))[0] for i in range(6)]
    seq = await embed(store, "alice", tid, mids[3], [0.0, 1.0])
    r = await search(ask, thread_id=tid, min_seq=seq, model="emb", vector=[0.0, 2.0],
                     before=1, after=1)
    assert [i["message_id"] for i in r["items"]] == mids[2:5]
    assert [i["found_by"] for i in r["items"]] == [[], ["vector"], []]
    capped = await search(ask, thread_id=tid, min_seq=seq, model="emb", vector=[0.0, 2.0],
                          max_order=3)
    assert capped["hits"] == []  # the prompt's order and later are not searched


async def test_only_the_users_vectors_of_the_same_model_are_compared(
        store: EventStore, ask: Ask) -> None:
    mine, _ = await create_thread(store, "alice")
    theirs, _ = await create_thread(store, "bob")
    m1, _ = await save_message(store, "alice", mine, 0, text="one")
    m2, _ = await save_message(store, "alice", mine, 1, text="two")
    m3, _ = await save_message(store, "bob", theirs, 0, text="three")
    await embed(store, "alice", mine, m1, [1.0, 0.0])
    await embed(store, "alice", mine, m2, [1.0, 0.0], model="other")
    seq = await embed(store, "bob", theirs, m3, [1.0, 0.0])
    r = await search(ask, all_threads=True, min_seq=seq, model="emb", vector=[1.0, 0.0])
    assert r["hits"] == [m1]
    assert (await search(ask, all_threads=True, model="other", vector=[1.0, 0.0]))[
        "hits"] == [m2]
    # dimensions are checked against the query's model only
    unseen = await search(ask, all_threads=True, model="unseen", vector=[1.0, 0.0, 0.0])
    assert unseen["hits"] == []


async def test_bad_vectors_are_invalid_input(store: EventStore, ask: Ask) -> None:
    tid, _ = await create_thread(store, "alice")
    mid, _ = await save_message(store, "alice", tid, 0, text="hello")
    seq = await embed(store, "alice", tid, mid, [0.6, 0.8, 0.0])
    base = {"user_id": "alice", "thread_id": tid, "min_seq": seq}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"model": "emb", "vector": []}, "vector"),
        ({"model": "emb", "vector": [0.0, 0.0, 0.0]}, "all zeros"),
        ({"vector": [1.0, 0.0, 0.0]}, "needs model"),
        ({"model": "emb", "vector": [0.1] * 8_193}, "vector"),
        ({}, "give text, vector"),
        ({"model": "emb", "vector": [1.0, 0.0]}, "2 dimensions"),
        ({"model": "emb", "vector": [1.0, "x", 0.0]}, "vector"),
    ]
    for body, needle in cases:
        r = await ask("messages.search", {**base, **body})
        assert r.error is not None and r.error.code == "invalid_input", body
        assert needle in r.error.message + str(r.error.details), (body, r.error)
    r = await ask("messages.search", b'{"user_id": "alice", "all_threads": true, '
                                     b'"model": "emb", "vector": [NaN, 1.0, 0.0]}')
    assert r.error is not None and r.error.code == "invalid_input"
