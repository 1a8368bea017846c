"""An in-memory index of one canvas's edits, for history queries and reference snippets.

Holds one compact :class:`EditRecord` per edit (version order) and inverted lists by
element id, author and text token, so:

- history filtered by element or author is O(matches on the page), not O(edits);
- text search over summaries is BM25 over the postings of the query's tokens (tokens in
  more than half of the edits carry almost no information and are skipped, which bounds
  the work on long canvases);
- vector search (when an embedding model is set) compares against the vectors of the
  most recent ``vector_window`` edits that have one (pure Python, no numpy here).

Memory is about 0.5-1 KB per edit (the snippet is kept as the event gave it). The index
is rebuilt from the log when a canvas is loaded; it is not persisted.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

_TOKEN = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset({
    "a", "an", "and", "the", "of", "to", "in", "on", "at", "for", "with", "by", "is", "it",
    "this", "that", "make", "like", "me", "my", "please", "i", "you", "we", "be", "as",
    "from", "or", "into"})
BM25_K1 = 1.2
BM25_B = 0.75


def tokenize(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS]


@dataclass(slots=True)
class EditRecord:
    version: int
    seq: int
    base_version: int
    touched: list[str]
    summary: str
    author: str
    author_kind: str
    message_id: str | None
    snippet: dict[str, dict[str, Any]]
    reverts: int | None
    at: datetime | None
    command_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "seq": self.seq, "base_version": self.base_version,
                "touched": self.touched, "summary": self.summary, "author": self.author,
                "author_kind": self.author_kind, "message_id": self.message_id,
                "snippet": self.snippet, "reverts": self.reverts,
                "at": self.at.isoformat() if self.at else None}

    def search_text(self) -> str:
        """What text search sees: the summary, touched ids, and the touched elements'
        types and texts (after the edit, else before)."""
        parts = [self.summary, *self.touched]
        for eid in self.touched:
            el = self.snippet.get("after", {}).get(eid) or self.snippet.get("before", {}).get(eid)
            if isinstance(el, dict):
                for key in ("type", "text"):
                    value = el.get(key)
                    if isinstance(value, str):
                        parts.append(value[:200])
        return " ".join(parts)


@dataclass
class EditIndex:
    records: list[EditRecord] = field(default_factory=list)
    by_element: dict[str, list[int]] = field(default_factory=dict)
    by_author: dict[str, list[int]] = field(default_factory=dict)
    postings: dict[str, dict[int, int]] = field(default_factory=dict)
    lengths: dict[int, int] = field(default_factory=dict)
    total_length: int = 0
    vectors: dict[int, list[float]] = field(default_factory=dict)

    def add(self, rec: EditRecord) -> None:
        """Index ``rec``; its version must be the next one (edits arrive in order)."""
        if rec.version != len(self.records) + 1:
            raise ValueError(f"edit {rec.version} indexed after {len(self.records)}")
        self.records.append(rec)
        for eid in rec.touched:
            self.by_element.setdefault(eid, []).append(rec.version)
        self.by_author.setdefault(rec.author, []).append(rec.version)
        counts = Counter(tokenize(rec.search_text()))
        for tok, n in counts.items():
            self.postings.setdefault(tok, {})[rec.version] = n
        length = sum(counts.values())
        self.lengths[rec.version] = length
        self.total_length += length

    def get(self, version: int) -> EditRecord | None:
        return self.records[version - 1] if 1 <= version <= len(self.records) else None

    def __len__(self) -> int:
        return len(self.records)

    # ----------------------------------------------------------------- queries
    def versions(self, *, element_id: str | None = None, author: str | None = None
                 ) -> list[int]:
        """Ascending versions matching both filters (all when none)."""
        lists = []
        if element_id is not None:
            lists.append(self.by_element.get(element_id, []))
        if author is not None:
            lists.append(self.by_author.get(author, []))
        if not lists:
            return list(range(1, len(self.records) + 1))
        if len(lists) == 1:
            return lists[0]
        small, other = sorted(lists, key=len)
        return [v for v in small if _contains(other, v)]

    def page(self, *, before: int | None, limit: int, element_id: str | None = None,
             author: str | None = None) -> tuple[list[EditRecord], int | None]:
        """Newest first, versions < ``before``; returns the page and the next cursor."""
        matching = self.versions(element_id=element_id, author=author)
        end = len(matching) if before is None else bisect_left(matching, before)
        start = max(0, end - limit)
        page = [self.records[v - 1] for v in reversed(matching[start:end])]
        return page, (matching[start] if start > 0 else None)

    def search(self, query: str, limit: int) -> list[tuple[int, float]]:
        """BM25 over the edits' search text: ``[(version, score)]``, best first."""
        n = len(self.records)
        if n == 0 or limit <= 0:
            return []
        avg = self.total_length / n or 1.0
        scores: dict[int, float] = {}
        for tok in set(tokenize(query)):
            plist = self.postings.get(tok)
            if not plist or len(plist) > n / 2:
                continue
            idf = math.log(1 + (n - len(plist) + 0.5) / (len(plist) + 0.5))
            for version, tf in plist.items():
                norm = tf + BM25_K1 * (1 - BM25_B + BM25_B * self.lengths[version] / avg)
                scores[version] = scores.get(version, 0.0) + idf * tf * (BM25_K1 + 1) / norm
        best = sorted(scores.items(), key=lambda kv: (-kv[1], -kv[0]))
        return best[:limit]

    def nearest(self, query_vector: list[float], limit: int, window: int
                ) -> list[tuple[int, float]]:
        """Cosine similarity (vectors are unit length) over the last ``window`` edits."""
        if not self.vectors or limit <= 0:
            return []
        lo = max(1, len(self.records) - window + 1)
        scored = []
        for version in range(len(self.records), lo - 1, -1):
            vec = self.vectors.get(version)
            if vec is not None and len(vec) == len(query_vector):
                scored.append((version, sum(a * b for a, b in zip(vec, query_vector,
                                                                  strict=True))))
        scored.sort(key=lambda kv: (-kv[1], -kv[0]))
        return scored[:limit]

    def missing_vectors(self, window: int) -> list[EditRecord]:
        lo = max(1, len(self.records) - window + 1)
        return [r for r in self.records[lo - 1:] if r.version not in self.vectors]


def _contains(sorted_list: list[int], v: int) -> bool:
    i = bisect_left(sorted_list, v)
    return i < len(sorted_list) and sorted_list[i] == v
