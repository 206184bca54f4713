"""The Redis RateLimiter against a real Redis: one window shared by every process, atomic under concurrency,
OpenAI's headers, and a fall-back to per-process counting (then back) when Redis is unreachable."""

from __future__ import annotations

import asyncio

import pytest

from tests.fakes.server import free_port


def _limiter(url: str, prefix: str) -> object:
    pytest.importorskip("redis")
    from redis.asyncio import Redis

    from rhetor.storage.redis_limits import RedisLimiter

    return RedisLimiter(Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1), prefix, url)


async def test_two_processes_share_one_window_atomically(redis_prefix: tuple[str, str]) -> None:
    from rhetor.storage.redis_limits import RedisLimiter

    url, prefix = redis_prefix
    a, b = _limiter(url, prefix), _limiter(url, prefix)
    assert isinstance(a, RedisLimiter) and isinstance(b, RedisLimiter)
    verdicts = await asyncio.gather(*(lim.admit("key_x", 10, None, 0) for lim in [a, b] * 15))
    assert sum(v.allowed for v in verdicts) == 10  # the in-process limiter would let each process admit 10: 20
    refused = next(v for v in verdicts if not v.allowed)
    assert refused.exceeded == "requests" and refused.limit == 10 and 0 < refused.retry_after <= 60
    assert dict(refused.headers)[b"x-ratelimit-remaining-requests"] == b"0"
    assert b"retry-after" in dict(refused.headers)
    assert (await a.admit("key_other", 10, None, 0)).allowed  # subjects are separate
    await a._client.aclose()
    await b._client.aclose()


async def test_tokens_reserved_released_and_consumed_across_processes(redis_prefix: tuple[str, str]) -> None:
    from rhetor.storage.redis_limits import RedisLimiter

    url, prefix = redis_prefix
    a, b = _limiter(url, prefix), _limiter(url, prefix)
    assert isinstance(a, RedisLimiter) and isinstance(b, RedisLimiter)
    first = await a.admit("c", None, 100, 60)
    assert first.allowed and first.reserved == 60
    assert dict(first.headers)[b"x-ratelimit-remaining-tokens"] == b"40"
    over = await b.admit("c", None, 100, 60)  # the reservation made on a counts on b
    assert not over.allowed and over.exceeded == "tokens"
    a.release("c", 60)
    a.consume("c", 30)
    await a.drain()
    again = await b.admit("c", None, 100, 60)
    assert again.allowed and dict(again.headers)[b"x-ratelimit-remaining-tokens"] == b"10"
    assert not (await b.admit("c", None, 100, 20)).allowed
    await a._client.aclose()
    await b._client.aclose()


async def test_unreachable_redis_falls_back_to_per_process_counting() -> None:
    from rhetor.storage.redis_limits import RedisLimiter

    url = f"redis://:secret@127.0.0.1:{free_port()}/0"  # nothing listens there
    lim = _limiter(url, "p:")
    assert isinstance(lim, RedisLimiter)
    verdicts = [await lim.admit("k", 2, None, 0) for _ in range(3)]
    assert [v.allowed for v in verdicts] == [True, True, False]  # still limited, by this process alone
    assert lim.status()["state"].startswith("per-process") and "secret" not in lim.status()["url"]
    await lim._client.aclose()
