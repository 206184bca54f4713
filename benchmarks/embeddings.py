"""Semantic-memory benchmark: local embedding throughput, and exact cosine search latency over 10k and 100k
stored vectors (384 dimensions, the local model's), with NumPy on one core — and, when the `sqlite_vec`
module is importable, sqlite-vec's brute-force `vec0` KNN over the same vectors for comparison.

    .venv/bin/python benchmarks/embeddings.py [--sizes 10000 100000] [--queries 200] [--texts 512]

BLAS is held to one thread (set before NumPy loads) so "one core" is what is measured. Vectors are random
unit vectors: exact search costs the same whatever their values.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import asyncio  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from rhetor.context.embedder import normalize  # noqa: E402
from rhetor.context.scopes import search_rows  # noqa: E402

DIM = 384
CONTEXTS = 100


def _ms(samples: list[float]) -> str:
    s = sorted(samples)
    return f"p50 {statistics.median(s) * 1000:7.2f} ms   p99 {s[int(len(s) * 0.99) - 1] * 1000:7.2f} ms"


def bench_search(n: int, queries: int, rng: np.random.Generator) -> None:
    """The NumPy product a search runs once its rows are in memory (a cached scope, or one scan chunk);
    benchmarks/stored.py measures searches end to end, reading vectors from the database."""
    matrix = normalize(rng.standard_normal((n, DIM)).astype(np.float32))
    ids = np.arange(1, n + 1, dtype=np.int64)
    one = ids % CONTEXTS == 7
    qs = normalize(rng.standard_normal((queries, DIM)).astype(np.float32))
    for label, (rows_ids, rows) in (("all vectors", (ids, matrix)),
                                    (f"one context (1/{CONTEXTS})", (ids[one], matrix[one]))):
        times = []
        for q in qs:
            t0 = time.perf_counter()
            search_rows(rows_ids, rows, q, 10)
            times.append(time.perf_counter() - t0)
        print(f"numpy       n={n:>7}  {label:<22} {_ms(times)}")
    bench_sqlite_vec(matrix, qs)


def bench_sqlite_vec(matrix: np.ndarray, qs: np.ndarray) -> None:  # type: ignore[type-arg]
    try:
        import sqlite_vec  # type: ignore[import-not-found]
    except ImportError:
        return
    conn = sqlite3.connect(":memory:")
    if not hasattr(conn, "enable_load_extension"):
        print("sqlite-vec  not measurable: this Python's sqlite3 was built without loadable extensions")
        return
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.execute(f"CREATE VIRTUAL TABLE v USING vec0(embedding float[{DIM}] distance_metric=cosine)")
    conn.executemany("INSERT INTO v(rowid, embedding) VALUES (?, ?)",
                     ((i + 1, row.tobytes()) for i, row in enumerate(matrix)))
    times = []
    for q in qs:
        t0 = time.perf_counter()
        conn.execute("SELECT rowid, distance FROM v WHERE embedding MATCH ? AND k = 10", (q.tobytes(),)).fetchall()
        times.append(time.perf_counter() - t0)
    print(f"sqlite-vec  n={len(matrix):>7}  {'all vectors':<22} {_ms(times)}")


async def bench_embed(texts: int) -> None:
    from rhetor.context.embedder import local_available

    if not local_available():
        print("local embedder: not installed (./setup.sh installs it)")
        return
    from rhetor.context.embedder_local import LocalEmbedder

    e = LocalEmbedder()
    t0 = time.perf_counter()
    await e.warm()
    load = time.perf_counter() - t0
    words = "the deploy pipeline waits for the migration job before rolling out new pods".split()
    rng = np.random.default_rng(1)
    corpus = [" ".join(rng.choice(words, size=int(rng.integers(12, 60)))) for _ in range(texts)]
    await e.embed(corpus[:32])  # warm-up
    for batch in (1, 32):
        t0 = time.perf_counter()
        for i in range(0, len(corpus), batch):
            await e.embed(corpus[i:i + batch])
        rate = len(corpus) / (time.perf_counter() - t0)
        print(f"local all-MiniLM-L6-v2 ({e.runtime} runtime, one thread), batch {batch:>2}: {rate:7.1f} messages/s")
    print(f"local model first load: {load:.2f} s")
    await e.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--texts", type=int, default=512)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for n in args.sizes:
        bench_search(n, args.queries, rng)
    asyncio.run(bench_embed(args.texts))


if __name__ == "__main__":
    main()
