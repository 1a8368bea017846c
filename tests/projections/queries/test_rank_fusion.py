"""Reciprocal rank fusion (pure): scores, ordering, ties, limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections.queries.fusion import RRF_K, reciprocal_rank_fusion


def test_agreement_between_rankings_beats_a_single_first_place() -> None:
    fused = reciprocal_rank_fusion({"text": ["a", "b", "c"], "vector": ["d", "b", "c"]})
    # b = 2/62 > c = 2/63 > a = d = 1/61 (tie: same best rank, a seen first)
    assert [f.id for f in fused] == ["b", "c", "a", "d"]
    b = fused[0]
    assert b.score == pytest.approx(2 / (RRF_K + 2))
    assert b.ranks == {"text": 2, "vector": 2} and b.found_by == ["text", "vector"]
    assert fused[2].found_by == ["text"] and fused[3].found_by == ["vector"]


def test_k_sets_how_much_first_places_dominate() -> None:
    rankings = {"text": ["solo", "x", "both"], "vector": ["y", "z", "both"]}
    assert reciprocal_rank_fusion(rankings)[0].id == "both"  # 2/63 > 1/61
    assert reciprocal_rank_fusion(rankings, k=1)[0].id == "solo"  # 1/2 = 2/4, better rank
    with pytest.raises(ValueError):
        reciprocal_rank_fusion(rankings, k=0)


def test_ties_go_to_the_better_rank_then_to_the_first_seen() -> None:
    fused = reciprocal_rank_fusion({"text": ["t1", "t2"], "vector": ["v1", "v2"]})
    assert [f.id for f in fused] == ["t1", "v1", "t2", "v2"]


def test_limit_duplicates_and_empty_rankings() -> None:
    assert reciprocal_rank_fusion({}) == []
    assert reciprocal_rank_fusion({"text": [], "vector": []}) == []
    fused = reciprocal_rank_fusion({"text": ["a", "a", "b"]}, limit=1)
    assert [(f.id, f.ranks) for f in fused] == [("a", {"text": 1})]


@given(st.dictionaries(st.sampled_from(["text", "vector", "other"]),
                       st.lists(st.sampled_from("abcdefgh"), unique=True), max_size=3))
def test_scores_are_sums_of_reciprocal_ranks_best_first(rankings: dict[str, list[str]]
                                                        ) -> None:
    fused = reciprocal_rank_fusion(rankings)
    assert {f.id for f in fused} == {d for ids in rankings.values() for d in ids}
    for f in fused:
        expected = sum(1 / (RRF_K + ids.index(f.id) + 1)
                       for ids in rankings.values() if f.id in ids)
        assert f.score == pytest.approx(expected)
    assert [f.score for f in fused] == sorted((f.score for f in fused), reverse=True)
