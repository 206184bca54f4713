"""The simulated embedder: deterministic, offline text vectors for tests and keyless use.

A hashed bag of words: each lower-cased word (`\\w+`) adds ±1 to one of `DIMENSIONS` (384) slots chosen by
its BLAKE2b hash (the sign by another hash bit), and the vector is L2-normalized. Texts sharing words have
a positive cosine similarity, unrelated texts ~0, the same text always the same vector (across processes
and versions: this is a stable contract — semantic-memory tests rely on it). An empty text (no words)
embeds to the unit vector e0. Knows nothing of providers, HTTP or routing.
"""

from __future__ import annotations

import hashlib
import math
import re
from functools import lru_cache

DIMENSIONS = 384
MODEL = "simulated-embedding"
_WORD = re.compile(r"\w+")


@lru_cache(maxsize=65536)
def _slot(word: str) -> tuple[int, float]:
    digest = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "big")
    return digest % DIMENSIONS, (1.0 if (digest >> 63) & 1 else -1.0)


def embed_text(text: str) -> list[float]:
    """The unit-length vector of `text` (DIMENSIONS floats)."""
    vector = [0.0] * DIMENSIONS
    for word in _WORD.findall(text.lower()):
        index, sign = _slot(word)
        vector[index] += sign
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0:
        vector[0] = 1.0
        return vector
    return [x / norm for x in vector]


__all__ = ["DIMENSIONS", "MODEL", "embed_text"]
