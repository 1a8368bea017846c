"""Reciprocal rank fusion (RRF): several rankings of the same documents merged into one.

A document at rank ``r`` (1-based) of a ranking scores ``1 / (k + r)`` from it; its fused
score is the sum over the rankings that hold it (Cormack, Clarke and Büttcher, SIGIR
2009). Only ranks count, not the searches' raw scores, so a word count and a cosine
similarity merge without calibration. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

RRF_K = 60
"""The constant ``k`` of the paper (and the usual default of hybrid search engines). It
sets how much the first ranks dominate: with ``k = 60`` a document ranked ``r``-th by both
searches (``2 / (60 + r)``) beats one ranked first by a single search (``1 / 61``) for any
``r`` up to 61, so agreement between the searches wins; with ``k = 1`` it would take ranks
(2, 2) or better. Larger ``k`` flattens the ranks further."""


@dataclass(frozen=True)
class Fused:
    """One document of the fused ranking: its score and its rank in each ranking that
    holds it (by ranking name)."""

    id: str
    score: float
    ranks: dict[str, int] = field(default_factory=dict)

    @property
    def found_by(self) -> list[str]:
        return list(self.ranks)


def reciprocal_rank_fusion(rankings: Mapping[str, Sequence[str]], *, k: int = RRF_K,
                           limit: int | None = None) -> list[Fused]:
    """Fuse ``rankings`` (name -> ids, best first) into one list, best first.

    Ties (equal scores) go to the better best rank, then to the document seen first
    (rankings in the order given, each best first), so the result is deterministic. An id
    repeated within one ranking counts at its first (best) rank only."""
    if k < 1:
        raise ValueError("k must be >= 1")
    scores: dict[str, float] = {}
    ranks: dict[str, dict[str, int]] = {}
    for name, ids in rankings.items():
        seen: set[str] = set()
        for rank, doc in enumerate(ids, start=1):
            if doc in seen:
                continue
            seen.add(doc)
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
            ranks.setdefault(doc, {})[name] = rank
    first_seen = {doc: i for i, doc in enumerate(scores)}
    ordered = sorted(scores, key=lambda d: (-scores[d], min(ranks[d].values()), first_seen[d]))
    if limit is not None:
        ordered = ordered[:limit]
    return [Fused(doc, scores[doc], ranks[doc]) for doc in ordered]
