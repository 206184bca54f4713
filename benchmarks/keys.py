"""CPU cost of caller keys and rate limits per request, in process: the key middleware around a do-nothing ASGI
app (open Rhetor / a virtual key / a virtual key with RPM+TPM limits, headers added and the reservation released),
plus the usage record's TPM settlement — interleaved rounds, medians, so a busy machine moves every variant alike.

    .venv/bin/python benchmarks/keys.py [--requests 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rhetor.api.auth import ApiKeyMiddleware
from rhetor.governance.access import Access
from rhetor.governance.keys import KeyRecord, digest
from rhetor.governance.ledger import UsageRecord
from rhetor.settings import Settings


async def noop(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def receive() -> Any:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: Any) -> None:
    return None


async def access_with(spec: dict[str, Any] | None) -> Access:
    access = Access(Settings(data_dir=Path(tempfile.mkdtemp(prefix="rhetor-keys-bench-"))))
    await access.store.open()
    if spec is not None:
        await access.store.create(KeyRecord(id="key_bench", name="bench", digest=digest(b"bench"), hint="bench",
                                            created_at=time.time(), spec=spec))
    await access.reload()
    return access


async def per_request_us(app: Any, n: int, access: Access | None) -> float:
    headers = [(b"host", b"x"), (b"content-type", b"application/json"), (b"authorization", b"Bearer bench"),
               (b"content-length", b"20")]
    rec = UsageRecord(ts=0.0, request_id=None, key_id="key_bench", component=None, task_type=None, front="native",
                      provider="openai", model="gpt-4o-mini", input_tokens=10, output_tokens=5)
    started = time.perf_counter()
    for _ in range(n):
        scope = {"type": "http", "path": "/api/v1/chat", "method": "POST", "headers": headers, "query_string": b""}
        await app(scope, receive, send)
        if access is not None:
            access.record(rec)  # the usage record's TPM settlement (the ledger's Tee)
    return (time.perf_counter() - started) / n * 1e6


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    open_access = await access_with(None)
    keyed = await access_with({})
    limited = await access_with({"rpm": 10**9, "tpm": 10**12})
    variants = {"no middleware": (noop, None), "open (no keys)": (ApiKeyMiddleware(noop, open_access), open_access),
                "virtual key": (ApiKeyMiddleware(noop, keyed), keyed),
                "key + RPM/TPM": (ApiKeyMiddleware(noop, limited), limited)}
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (app, access) in variants.items():
            results[name].append(await per_request_us(app, args.requests, access))
    base = statistics.median(results["no middleware"])
    for name, values in results.items():
        med = statistics.median(values)
        print(f"{name:16} {med:7.2f} us/request  (+{med - base:5.2f} us over no middleware)")
    for access in (open_access, keyed, limited):
        await access.store.close()


if __name__ == "__main__":
    asyncio.run(main())
