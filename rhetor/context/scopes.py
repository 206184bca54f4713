"""A context's message vectors in memory and exact cosine search over them: `Scope` (one context's vectors in id
order, as int8 codes and a scale each: rhetor.context.int8), `ScopeBuilder` (a scope filled from rows read newest
first, within a byte budget), and the top-k searches over scopes and over float32 chunks of a wide scan.

A cached vector costs `row_bytes`: 396 bytes with its id at 384 dimensions, where float32 took 1,544. Rows are
appended into spare capacity and the row count is published last, so a reader on another thread sees a
consistent prefix. Pure computation: knows nothing of SQL, caches' eviction, embedders or HTTP
(rhetor.context.vectors reads scopes from the database and keeps them in its ScopeCache).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # NumPy loads on first use (rhetor.lazy), not at start-up
    import numpy as np
    from numpy.typing import NDArray
else:
    from rhetor.lazy import numpy as np

from rhetor.context.int8 import EXTRA_BYTES, Codes, Scales, quantize, scores

if TYPE_CHECKING:
    Ids = NDArray[np.int64]
    Matrix = NDArray[np.float32]
else:
    Ids = Matrix = Any  # only ever in (string) annotations: naming them must not import NumPy


class Scope:
    """The vectors of one context in id order, as int8 codes and scales (rhetor.context.int8): all of them
    when `floor` is 0, else only ids >= `floor` (the most recent that the cache budget allows). Rows are
    appended into spare capacity and the row count is published last (one tuple assignment), so a reader on
    another thread always sees a consistent prefix."""

    __slots__ = ("data", "floor")

    def __init__(self, ids: Ids, codes: Codes, scales: Scales, *, floor: int = 0) -> None:
        self.data: tuple[Ids, Codes, Scales, int] = (ids, codes, scales, len(ids))
        self.floor = floor

    def __len__(self) -> int:
        return self.data[3]

    @property
    def dim(self) -> int | None:
        return int(self.data[1].shape[1]) if self.data[3] else None

    @property
    def nbytes(self) -> int:
        ids, codes, scales, _ = self.data
        return int(ids.nbytes + codes.nbytes + scales.nbytes)

    def rows(self) -> tuple[Ids, Codes, Scales]:
        ids, codes, scales, n = self.data
        return ids[:n], codes[:n], scales[:n]

    def search(self, query: Matrix, k: int, *, below: int | None = None) -> tuple[Ids, NDArray[np.float32]]:
        """The `k` best (ids, cosines) of the scope, best first; only ids < `below` if given."""
        return search_codes(*self.rows(), query, k, below=below)

    def append(self, ids: list[int], matrix: Matrix, max_bytes: int) -> None:
        """Add (or replace) float32 vectors, keeping ids ascending; past `max_bytes` the oldest rows are dropped
        and `floor` rises. Runs under the cache's lock."""
        keep = [i for i, mid in enumerate(ids) if mid >= self.floor]
        old_ids, old_c, old_s, n = self.data
        if not keep or (n and matrix.shape[1] != old_c.shape[1]):
            return  # nothing in range, or a different space under the same name: never mixed in
        new_ids = np.asarray([ids[i] for i in keep], dtype=np.int64)
        new_c, new_s = quantize(matrix[keep])
        if n:
            at = np.minimum(np.searchsorted(old_ids[:n], new_ids), n - 1)
            found = old_ids[at] == new_ids
            if found.any():  # re-embedded: replace in place
                old_c[at[found]], old_s[at[found]] = new_c[found], new_s[found]
                new_ids, new_c, new_s = new_ids[~found], new_c[~found], new_s[~found]
        if not len(new_ids):
            return
        need = n + len(new_ids)
        if need > len(old_ids):  # grow by a quarter: amortized O(1) per row, little slack against the budget
            cap = max(64, need, len(old_ids) + len(old_ids) // 4)
            grown_ids = np.zeros(cap, dtype=np.int64)
            grown_c = np.zeros((cap, matrix.shape[1]), dtype=np.int8)
            grown_s = np.zeros(cap, dtype=np.float32)
            if n:  # an empty scope's codes are (0, 0) (read_scope found no vectors): nothing to copy, no width
                grown_ids[:n], grown_c[:n], grown_s[:n] = old_ids[:n], old_c[:n], old_s[:n]
            old_ids, old_c, old_s = grown_ids, grown_c, grown_s
        old_ids[n:need], old_c[n:need], old_s[n:need] = new_ids, new_c, new_s
        each = row_bytes(int(matrix.shape[1]))
        unsorted = not _ascending(old_ids[max(0, n - 1):need])
        if unsorted or need * each > max_bytes:  # rare: out-of-order ids, or over budget (oldest go)
            order = np.argsort(old_ids[:need], kind="stable")[-max(1, max_bytes // each):]
            if len(order) < need:
                self.floor = int(old_ids[order[0]])
            old_ids, old_c, old_s = old_ids[order].copy(), old_c[order].copy(), old_s[order].copy()
            need = len(old_ids)
        self.data = (old_ids, old_c, old_s, need)


class ScopeBuilder:
    """One context's vectors read newest first, kept up to `max_bytes` of cached rows (both stores'
    `read_scope` fill one). Each batch of rows is quantized as it arrives: the float32 blobs of a batch are
    the only transient copy, never the whole scope's."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.ids: list[int] = []
        self.parts: list[tuple[Codes, Scales]] = []  # newest first, each batch newest first
        self.width = 0  # bytes of one float32 vector: the first row's
        self.size, self.truncated = 0, False

    def take(self, rows: Any) -> bool:
        """Add (message_id, vector bytes) rows, newest first; False once the byte budget is spent."""
        blobs: list[bytes] = []
        more = True
        for mid, blob in rows:
            self.width = self.width or len(blob)
            if len(blob) != self.width:
                continue  # a different space under the same name: never mixed in
            if self.size + row_bytes(self.width // 4) > self.max_bytes:
                self.truncated, more = True, False
                break
            self.ids.append(int(mid))
            blobs.append(bytes(blob))
            self.size += row_bytes(self.width // 4)
        if blobs:
            self.parts.append(quantize(from_bytes(blobs, self.width // 4)))
        return more

    def build(self) -> Scope:
        ids = self.ids[::-1]
        n, dim = len(ids), self.width // 4
        codes, scales = np.empty((n, dim if n else 0), dtype=np.int8), np.empty(n, dtype=np.float32)
        end = n
        for part_codes, part_scales in self.parts:  # newest first: filled from the end, rows reversed
            codes[end - len(part_codes):end], scales[end - len(part_codes):end] = part_codes[::-1], part_scales[::-1]
            end -= len(part_codes)
        return Scope(np.asarray(ids, dtype=np.int64), codes, scales, floor=ids[0] if self.truncated else 0)


def row_bytes(dim: int) -> int:
    """What one cached vector costs the cache budget: its int8 codes, its scale and its int64 id."""
    return dim + EXTRA_BYTES + 8


def search_rows(ids: Ids, matrix: Matrix, query: Matrix, k: int, *,
                below: int | None = None) -> tuple[Ids, NDArray[np.float32]]:
    """The `k` best (ids, cosines) of these float32 rows (ids ascending), best first; only ids < `below` if given."""
    if len(ids) == 0 or k <= 0 or matrix.shape[1] != query.shape[-1]:
        return _nothing()
    cut = len(ids) if below is None else int(np.searchsorted(ids, below))  # ids ascend in every scope and chunk
    return _best(ids[:cut], matrix[:cut] @ query.reshape(-1), k)


def search_codes(ids: Ids, codes: Codes, scales: Scales, query: Matrix, k: int, *,
                 below: int | None = None) -> tuple[Ids, NDArray[np.float32]]:
    """`search_rows` over int8 codes and their scales (a cached scope, rhetor.context.int8)."""
    if len(ids) == 0 or k <= 0 or codes.shape[1] != query.shape[-1]:
        return _nothing()
    cut = len(ids) if below is None else int(np.searchsorted(ids, below))
    return _best(ids[:cut], scores(codes[:cut], scales[:cut], query), k)


def _nothing() -> tuple[Ids, NDArray[np.float32]]:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)


def _best(ids: Ids, found: NDArray[np.float32], k: int) -> tuple[Ids, NDArray[np.float32]]:
    top = _top_k(found, k)
    return ids[top], found[top]


def merge_top(a: tuple[Ids, NDArray[np.float32]], b: tuple[Ids, NDArray[np.float32]],
              k: int) -> tuple[Ids, NDArray[np.float32]]:
    """Two partial top-k answers as one."""
    ids, scores = np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])
    top = _top_k(scores, k)
    return ids[top], scores[top]


def _ascending(ids: Ids) -> bool:
    return len(ids) < 2 or bool(np.all(ids[1:] > ids[:-1]))


def _top_k(scores: NDArray[np.float32], k: int) -> NDArray[np.intp]:
    """Indices of the k highest scores, best first (argpartition: O(n), then a sort of k)."""
    if scores.shape[0] <= k:
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


def from_bytes(blobs: list[bytes], dim: int) -> Matrix:
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim)


__all__ = ["Ids", "Matrix", "Scope", "ScopeBuilder", "from_bytes", "merge_top", "row_bytes", "search_codes",
           "search_rows"]
