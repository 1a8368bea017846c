"""Deterministic, offline embeddings: hashed bag of words, L2-normalised.

Texts sharing words get similar vectors (cosine similarity grows with the overlap), so
vector search over them behaves plausibly in demos and tests. Same text, same vector, on
every machine and Python version (sha256, not ``hash()``).
"""

from __future__ import annotations

import hashlib
import math
import re

DEFAULT_DIMENSIONS = 64
_WORD = re.compile(r"\w+")


def hash_embedding(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """A unit vector of ``dimensions`` non-negative floats (all zeros only for text without
    words, so cosine similarity is defined for any text with a word)."""
    if dimensions < 1:
        raise ValueError("dimensions must be >= 1")
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        digest = hashlib.sha256(word.encode()).digest()
        index = int.from_bytes(digest[:4], "big") % dimensions
        vector[index] += 1.0
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector


def dimensions_of_model(model: str) -> int:
    """``scripted/hash-16`` -> 16; any name without a numeric ``-N`` suffix -> 64."""
    tail = model.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() and int(tail) > 0 else DEFAULT_DIMENSIONS
