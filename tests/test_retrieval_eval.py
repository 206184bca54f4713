"""Retrieval quality on tests/data/retrieval_eval.json: recall@5 of the local model (all-MiniLM-L6-v2,
offline, run by the NumPy forward pass: no PyTorch), the lexical fallback (FTS5 bm25) and no retrieval (the 5
most recent messages).

One test, one model load, one batched indexing pass. Run as a script to print the table:
`.venv/bin/python -m tests.test_retrieval_eval`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from rhetor.context import NewMessage, SqliteContextStore
from rhetor.context.embedder import Embedder, local_available
from rhetor.context.lexical import lexical_search
from rhetor.context.retrieval import Memory

DATA = Path(__file__).parent / "data" / "retrieval_eval.json"
K = 5
LOCAL_FLOOR = 0.9  # the issue-13 target; measured 0.95 (benchmarks/README.md)


async def evaluate(db: Path, embedder: Embedder | None) -> dict[str, Any]:
    """recall@K per mode over the evaluation set, stored in a fresh store at `db`."""
    data = json.loads(DATA.read_text())
    store = SqliteContextStore(db)
    await store.open()
    memory = Memory(store, embedder)
    try:
        for conv in data["conversations"]:
            for turn in conv["turns"]:
                await store.append_turn(conv["context_id"], [NewMessage("user", turn["user"]),
                                                             NewMessage("assistant", turn["assistant"])])
        ids = {conv["context_id"]: [m.id for m in await store.history(conv["context_id"])]
               for conv in data["conversations"]}
        if memory.indexer is not None:
            memory.start()
            await memory.indexer.drain(timeout_s=120)
        totals: dict[str, list[float]] = {"semantic": [], "lexical": [], "recency": []}
        for q in data["queries"]:
            cid = q["context_id"]
            relevant = {ids[cid][2 * t + i] for t in q["relevant_turns"] for i in (0, 1)}
            lexical = await store.run(lambda c, q=q, cid=cid: lexical_search(c, q["query"], K, context_id=cid))
            found = {"lexical": {h.id for h in lexical}, "recency": set(ids[cid][-K:])}
            if memory.indexer is not None:
                _, hits = await memory.search(q["query"], context_id=cid, k=K)
                found["semantic"] = {h.id for h in hits}
            for mode, got in found.items():
                totals[mode].append(len(got & relevant) / len(relevant))
        return {"messages": sum(len(v) for v in ids.values()), "queries": len(data["queries"]),
                **{mode: sum(v) / len(v) for mode, v in totals.items() if v}}
    finally:
        await memory.stop()
        await store.close()


def test_eval_set_is_well_formed() -> None:
    data = json.loads(DATA.read_text())
    turns = {c["context_id"]: len(c["turns"]) for c in data["conversations"]}
    assert sum(2 * n for n in turns.values()) >= 200 and len(data["queries"]) >= 24
    for q in data["queries"]:
        last = 2 * turns[q["context_id"]]  # messages; turn t holds messages 2t and 2t + 1
        assert q["query"] and all(0 <= t and 2 * t + 1 < last - K for t in q["relevant_turns"])


@pytest.mark.skipif(not local_available(), reason="the local model is not installed")
@pytest.mark.timeout(300)
async def test_local_model_recall_at_5(tmp_path: Path) -> None:
    from rhetor.context.embedder_local import LocalEmbedder

    result = await evaluate(tmp_path / "eval.db", LocalEmbedder(runtime="numpy"))  # no PyTorch
    print(f"\nrecall@{K}: {result}")
    assert result["recency"] == 0.0  # every labelled turn is older than the last K messages
    assert result["semantic"] >= LOCAL_FLOOR
    assert result["semantic"] > result["lexical"]


def main() -> None:
    import tempfile

    from rhetor.context.embedder_local import LocalEmbedder

    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(evaluate(Path(tmp) / "eval.db", LocalEmbedder()))
    sys.stdout.write(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
