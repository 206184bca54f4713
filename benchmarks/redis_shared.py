"""What Redis mode adds per request, measured in one process against a real Redis: a budget's reserve + release
(against the in-process book), a response-cache hit, and a breaker check (which reads the local mirror). A PING
loop in the same run is the round-trip baseline to compare with (absolute figures move with the machine's load).

    .venv/bin/python benchmarks/redis_shared.py [redis://127.0.0.1:6379/15]

Keys go under a random prefix, deleted at the end.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time

from redis.asyncio import Redis

from rhetor.governance.budgets import BudgetBook, parse_budget
from rhetor.governance.cache import CachedReply, reply_size
from rhetor.routing.breaker import CircuitBreaker
from rhetor.storage.redis_budgets import RedisSpend
from rhetor.storage.redis_cache import RedisCache
from rhetor.types import ChatResponse, Usage

URL = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/15"
N = 2000

async def main() -> None:
    client = Redis.from_url(URL)
    prefix = "rhetor-measure-" + secrets.token_hex(4) + ":"
    definition = {"id": "g", "daily_usd": 1e6, "policy": "block"}
    local = BudgetBook()
    local.put(parse_budget(definition))
    spend = RedisSpend(client, prefix, URL)
    shared = BudgetBook(shared=spend)
    shared.put(parse_budget(definition))
    app = local.applicable(None, None, None)
    for name, book in (("in-process budget admit", local), ("redis budget reserve", shared)):
        for _ in range(200):
            warm = (await book.reserve(app, 0.001, 10)).hold
            assert warm is not None
            warm.release()
        t = time.perf_counter()
        for _ in range(N):
            hold = (await book.reserve(app, 0.001, 10)).hold
            assert hold is not None
            hold.release()
        print(f"{name}: {(time.perf_counter() - t) / N * 1e6:.1f} us/request (reserve + release)")
    await spend.drain()
    cache = RedisCache(client, prefix, URL, ttl_s=60, max_bytes=64 * 2**20)
    r = ChatResponse("hello " * 50, "m", "simulated", usage=Usage(3, 4))
    cache.put("k", CachedReply(r, None, size=reply_size(r, None)))
    await cache.drain()
    t = time.perf_counter()
    for _ in range(N):
        await cache.lookup("k")
    print(f"redis cache hit lookup: {(time.perf_counter() - t) / N * 1e6:.1f} us")
    b = CircuitBreaker(5, 30.0)
    b.on_open = lambda k, s: None
    t = time.perf_counter()
    for _ in range(100000):
        b.allow(("openai", "gpt"))
    print(f"breaker allow (local mirror, hooks set): {(time.perf_counter() - t) / 100000 * 1e9:.0f} ns")
    keys = [k async for k in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()

async def ping() -> None:
    client = Redis.from_url(URL)
    await client.ping()
    t = time.perf_counter()
    for _ in range(N):
        await client.ping()
    print(f"redis PING round trip (baseline): {(time.perf_counter() - t) / N * 1e6:.1f} us")
    await client.aclose()

if __name__ == "__main__":
    asyncio.run(ping())
    asyncio.run(main())
