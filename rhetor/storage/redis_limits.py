"""The RateLimiter on Redis: one sliding window per subject shared by every worker and replica.

Each subject keeps two hashes of per-second counts (requests, tokens; fields older than 60 s dropped as they are
read) and a reserved-tokens counter. Admission is one Lua script — read, decide, count — so it is atomic however
many processes ask at once, and it reads the time from Redis (`TIME`), so replicas' clocks need not agree. When
Redis cannot be reached the limiter falls back to the in-process one (each process then counts its own, logged
once and shown by `status()`), and tries Redis again after `RETRY_S`. Knows redis-py and the limits' types;
nothing of HTTP or keys.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Final

from rhetor.governance.limits import InProcessLimiter, Verdict, duration
from rhetor.storage.urls import redact

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("rhetor.storage")
RETRY_S: Final = 5.0
WINDOW: Final = 60

# KEYS: requests hash, tokens hash, reserved counter. ARGV: rpm, tpm (-1 = none), tokens to reserve.
# Returns {allowed, kind (0 ok, 1 requests, 2 tokens), requests, tokens, reserved, req oldest, req newest,
#          tok oldest, tok newest, reserved by this call, now (microseconds)}.
ADMIT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1])
local now_us = tostring(t[1]) .. string.format('%06d', tonumber(t[2]))
local rpm, tpm, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local function window(key)
  local total, oldest, newest = 0, -1, -1
  local flat = redis.call('HGETALL', key)
  for i = 1, #flat, 2 do
    local s = tonumber(flat[i])
    if s <= now - 60 then
      redis.call('HDEL', key, flat[i])
    else
      total = total + tonumber(flat[i + 1])
      if oldest < 0 or s < oldest then oldest = s end
      if s > newest then newest = s end
    end
  end
  return total, oldest, newest
end
local rq, rq_old, rq_new = window(KEYS[1])
local tk, tk_old, tk_new = window(KEYS[2])
local reserved = math.max(0, tonumber(redis.call('GET', KEYS[3]) or '0'))
if rpm >= 0 and rq >= rpm then
  return {0, 1, rq, tk, reserved, rq_old, rq_new, tk_old, tk_new, 0, now_us}
end
local used = tk + reserved
if tpm >= 0 and used > 0 and used + tokens > tpm then
  return {0, 2, rq, tk, reserved, rq_old, rq_new, tk_old, tk_new, 0, now_us}
end
redis.call('HINCRBY', KEYS[1], now, 1)
redis.call('EXPIRE', KEYS[1], 61)
rq = rq + 1
if rq_old < 0 then rq_old = now end
rq_new = now
local mine = 0
if tpm >= 0 and tokens > 0 then
  mine = tokens
  reserved = redis.call('INCRBY', KEYS[3], tokens)
  redis.call('EXPIRE', KEYS[3], 900)
end
return {1, 0, rq, tk, reserved, rq_old, rq_new, tk_old, tk_new, mine, now_us}
"""
CONSUME: Final = """
local now = tonumber(redis.call('TIME')[1])
redis.call('HINCRBY', KEYS[1], now, tonumber(ARGV[1]))
redis.call('EXPIRE', KEYS[1], 61)
return 1
"""
RELEASE: Final = """
local left = redis.call('DECRBY', KEYS[1], tonumber(ARGV[1]))
if left <= 0 then redis.call('DEL', KEYS[1]) end
return left
"""


class RedisLimiter:
    """RateLimiter on `client` under `prefix`; `url` only names the server in warnings (shown without password)."""

    def __init__(self, client: Redis, prefix: str, url: str) -> None:
        self._client, self._prefix, self.shown = client, prefix, redact(url)
        self._admit = client.register_script(ADMIT)
        self._consume = client.register_script(CONSUME)
        self._release = client.register_script(RELEASE)
        self.local = InProcessLimiter()
        self._down_until = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def shared(self) -> bool:
        return time.monotonic() >= self._down_until

    def status(self) -> dict[str, Any]:
        return {"backend": "redis", "url": self.shown,
                "state": "shared" if self.shared else "per-process (redis unreachable)"}

    def _keys(self, subject: str) -> list[str]:
        base = f"{self._prefix}rl:{{{subject}}}:"  # one hash slot per subject (Redis Cluster)
        return [base + "req", base + "tok", base + "res"]

    def _lost(self, exc: BaseException) -> None:
        if self.shared:
            log.warning("rate limits fall back to per-process counting: redis %s unreachable (%s); retrying in %ss",
                        self.shown, exc, RETRY_S)
        self._down_until = time.monotonic() + RETRY_S

    async def admit(self, subject: str, rpm: int | None, tpm: int | None, tokens: int) -> Verdict:
        from redis.exceptions import ConnectionError, TimeoutError

        if self.shared:
            try:
                out = await self._admit(keys=self._keys(subject),
                                        args=[-1 if rpm is None else rpm, -1 if tpm is None else tpm, tokens])
                return _verdict([int(x) for x in out], rpm, tpm)
            except (ConnectionError, TimeoutError, OSError) as exc:
                self._lost(exc)
        return self.local.check(subject, rpm, tpm, tokens)

    def release(self, subject: str, reserved: int) -> None:
        if reserved:
            self.local.release(subject, reserved)  # a reservation made while degraded lives here; harmless if not
            self._spawn(self._release(keys=[self._keys(subject)[2]], args=[reserved]))

    def consume(self, subject: str, tokens: int) -> None:
        if tokens > 0:
            if not self.shared:
                self.local.consume(subject, tokens)
                return
            self._spawn(self._consume(keys=[self._keys(subject)[1]], args=[tokens]))

    def _spawn(self, call: Any) -> None:
        """Counting after the reply is off the hot path: a lost update costs accuracy, never a request."""

        async def run() -> None:
            from redis.exceptions import ConnectionError, TimeoutError

            try:
                await call
            except (ConnectionError, TimeoutError, OSError) as exc:
                self._lost(exc)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _verdict(out: list[int], rpm: int | None, tpm: int | None) -> Verdict:
    allowed, kind, requests, tokens, reserved, rq_old, rq_new, tk_old, tk_new, mine, now_us = out
    now = now_us / 1e6
    headers: list[tuple[bytes, bytes]] = []
    if rpm is not None:
        headers += [(b"x-ratelimit-limit-requests", str(rpm).encode()),
                    (b"x-ratelimit-remaining-requests", str(max(0, rpm - requests)).encode()),
                    (b"x-ratelimit-reset-requests", duration(_until(rq_new, now)).encode())]
    if tpm is not None:
        headers += [(b"x-ratelimit-limit-tokens", str(tpm).encode()),
                    (b"x-ratelimit-remaining-tokens", str(max(0, tpm - tokens - reserved)).encode()),
                    (b"x-ratelimit-reset-tokens", duration(_until(tk_new, now)).encode())]
    if allowed:
        return Verdict(True, headers, reserved=mine)
    kinds = "requests" if kind == 1 else "tokens"
    wait = _until(rq_old, now) if kind == 1 else (_until(tk_old, now) or 1.0)
    wait = max(wait, 0.001)
    headers += [(b"retry-after", str(math.ceil(wait)).encode()),
                (b"retry-after-ms", str(math.ceil(wait * 1000)).encode())]
    limit = rpm if kind == 1 else tpm
    return Verdict(False, headers, kinds, limit or 0, wait)


def _until(second: int, now: float) -> float:
    return 0.0 if second < 0 else max(0.0, second + WINDOW - now)


__all__ = ["RedisLimiter"]
