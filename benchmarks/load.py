"""A small, fast HTTP/1.1 load generator: N keep-alive connections, each sending requests back to back,
recording latency (and time to first SSE `data:` byte for streams). Raw asyncio streams, no HTTP library,
so the generator costs far less than the servers it measures.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    ttfb: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0

    def pct(self, values: list[float], p: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000

    def summary(self) -> dict[str, float]:
        n = len(self.latencies)
        out = {"requests": n, "errors": self.errors, "rps": n / self.elapsed if self.elapsed else 0.0,
               "p50_ms": self.pct(self.latencies, 0.5), "p99_ms": self.pct(self.latencies, 0.99),
               "mean_ms": statistics.fmean(self.latencies) * 1000 if n else float("nan")}
        if self.ttfb:
            out["ttfb_p50_ms"] = self.pct(self.ttfb, 0.5)
        return out


async def _read_response(reader: asyncio.StreamReader, started: float, stats: Stats) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    first_data = None
    if b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if first_data is None and b"data:" in chunk:
                first_data = time.perf_counter()
            if size == 0:
                break
    else:
        at = lower.find(b"content-length:")
        length = int(lower[at + 15:lower.find(b"\r\n", at)]) if at >= 0 else 0
        body = await reader.readexactly(length)
        if b"data:" in body[:64]:
            first_data = time.perf_counter()
    if first_data is not None:
        stats.ttfb.append(first_data - started)
    return status


async def _worker(host: str, port: int, request: bytes, deadline: float, budget: list[int], stats: Stats) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            started = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader, started, stats)
            stats.latencies.append(time.perf_counter() - started)
            if status != 200:
                stats.errors += 1
    finally:
        writer.close()


def build_request(host: str, port: int, path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer bench\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body


async def run_load(host: str, port: int, path: str, body: bytes, *, concurrency: int, seconds: float = 5.0,
                   max_requests: int = 10**9) -> Stats:
    stats = Stats()
    request = build_request(host, port, path, body)
    budget = [max_requests]
    started = time.perf_counter()
    await asyncio.gather(*[_worker(host, port, request, started + seconds, budget, stats)
                           for _ in range(concurrency)])
    stats.elapsed = time.perf_counter() - started
    return stats


__all__ = ["Stats", "build_request", "run_load"]
