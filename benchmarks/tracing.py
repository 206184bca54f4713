"""CPU cost of tracing per request, in one process, independent of machine load: the same app is driven through
its ASGI interface (no sockets) for N native chats against the simulated provider, with tracing off and on
(exporting over OTLP/HTTP to a loopback collector, which runs in another process), and the process CPU time
(event loop + the exporter's thread) per request is compared. Also times the disabled call sites themselves.

    .venv/bin/python benchmarks/tracing.py [--requests 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rhetor.api.app import create_app  # noqa: E402
from rhetor.observability import tracing  # noqa: E402
from rhetor.settings import Settings  # noqa: E402
from tests.fakes.server import free_port  # noqa: E402


async def drive(app: object, n: int) -> float:
    """CPU seconds per request over `n` sequential chats through the ASGI app (lifespan run around them)."""
    body = {"message": "hi", "provider_id": "simulated", "model_id": "simulated-fast"}
    async with app.router.lifespan_context(app):  # type: ignore[attr-defined]
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for _ in range(200):  # warm-up
                await client.post("/api/v1/chat", json=body)
            started = time.process_time()
            for _ in range(n):
                r = await client.post("/api/v1/chat", json=body)
                assert r.status_code == 200, r.text
            used = time.process_time() - started
    return used / n


def settings(**kw: object) -> Settings:
    return Settings(data_dir=Path(tempfile.mkdtemp(prefix="rhetor-trace-bench-")), embedder="none",
                    simulated_delay_scale=0.0, hermes_enabled=False, usage_ledger=False, **kw)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    port = free_port()
    collector = subprocess.Popen([sys.executable, "-m", "tests.fakes.otlp", str(port)], cwd=ROOT,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        time.sleep(1.5)
        per_call = min(timeit.repeat(lambda: tracing.span("x").__enter__(), number=100_000, repeat=5)) / 100_000
        print(f"disabled call site (span() with tracing off): {per_call * 1e9:.0f} ns")
        url = f"http://127.0.0.1:{port}/v1/traces"
        modes = {"off": {"otel": False}, "on, spans not exported": {"otel": True, "otel_exporter": "none"},
                 "on, OTLP to loopback": {"otel_endpoint": url}}
        sampled = os.environ.get("OTEL_TRACES_SAMPLER_ARG")
        cpu: dict[str, list[float]] = {m: [] for m in modes}
        for _ in range(args.rounds):  # interleaved, so drift in machine load hits all alike; a fresh app each
            for mode, kw in modes.items():
                cpu[mode].append(asyncio.run(drive(create_app(settings(**kw)), args.requests)))
        off = min(cpu["off"])
        for mode, values in cpu.items():
            best = min(values)
            print(f"CPU per request, tracing {mode}{' (sampler arg ' + sampled + ')' if sampled else ''}: "
                  f"{best * 1e3:.3f} ms ({1e3 * (best - off):+.3f} ms, {100 * (best / off - 1):+.0f}%)")
    finally:
        collector.terminate()
        collector.wait(5)


if __name__ == "__main__":
    main()
