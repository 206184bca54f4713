"""The response cache on Redis: one cache for every replica, each entry living RHETOR_CACHE_TTL_S, the whole
bounded to RHETOR_CACHE_MAX_MB (least recently used evicted first).

An entry is `<prefix>{cache}:e:<key>` holding the reply as JSON (the normalized answer and, for a stream, its
events, each tagged by kind — never pickle: what Redis holds is data, not code), set with the TTL. A sorted set
(`…:lru`, score = last use in ms) and a hash of sizes (`…:sz`) keep the byte total (`…:bytes`) under the bound:
PUT stores, counts and evicts in one Lua script; GET reads and touches in one. Entries past their TTL leave the
index as PUT finds them. A lookup is one round trip; a store is off the hot path. Redis unreachable: this
process falls back to its own in-memory cache (the same bound) and /health says so. Knows redis-py and the
normalized types; nothing of HTTP, routing or what a hit means for budgets.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from dataclasses import asdict, fields
from typing import TYPE_CHECKING, Any, Final

import orjson

from rhetor.governance.cache import CachedReply, MemoryCache
from rhetor.storage.urls import redact
from rhetor.types import (
    ChatResponse,
    RawFrame,
    ReasoningDelta,
    StreamEnd,
    StreamError,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("rhetor.storage")
RETRY_S: Final = 5.0
MAX_PENDING: Final = 256  # stores in flight; past this a store is skipped (counted)

# KEYS: entry, lru, sizes, bytes. ARGV: value, size, ttl ms, max bytes. Returns how many entries it evicted.
PUT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl, max = tonumber(ARGV[3]), tonumber(ARGV[4])
local function drop(name)
  local size = tonumber(redis.call('HGET', KEYS[3], name) or '0')
  redis.call('HDEL', KEYS[3], name)
  redis.call('ZREM', KEYS[2], name)
  redis.call('DEL', name)
  redis.call('DECRBY', KEYS[4], size)
end
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - ttl, 'LIMIT', 0, 32)) do drop(name) end
if redis.call('HEXISTS', KEYS[3], KEYS[1]) == 1 then drop(KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], now, KEYS[1])
redis.call('HSET', KEYS[3], KEYS[1], ARGV[2])
local total = redis.call('INCRBY', KEYS[4], tonumber(ARGV[2]))
local evicted = 0
while total > max do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)
  if #oldest == 0 then break end
  drop(oldest[1])
  evicted = evicted + 1
  total = tonumber(redis.call('GET', KEYS[4]) or '0')
end
return evicted
"""
# KEYS: entry, lru. Returns the value (and marks it used) or nil.
GET: Final = """
local v = redis.call('GET', KEYS[1])
if v then
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[2], 'XX', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), KEYS[1])
end
return v
"""

_EVENTS: dict[str, type[Any]] = {"text": TextDelta, "tool_call": ToolCallDelta, "end": StreamEnd,
                                 "reasoning": ReasoningDelta, "raw": RawFrame, "error": StreamError}


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$b": base64.b64encode(value).decode()}
    raise TypeError(type(value).__name__)


def encode(reply: CachedReply) -> bytes:
    events = None if reply.events is None else [asdict(e) for e in reply.events]
    return orjson.dumps({"r": asdict(reply.response), "e": events, "n": reply.size}, default=_plain)


def _unbytes(value: Any) -> Any:
    return base64.b64decode(value["$b"]) if isinstance(value, dict) and "$b" in value else value


def _usage(data: dict[str, Any]) -> Usage:
    names = {f.name for f in fields(Usage)}
    return Usage(**{k: v for k, v in data.items() if k in names})


def _event(data: dict[str, Any]) -> StreamEvent:
    cls = _EVENTS[data["kind"]]
    names = {f.name for f in fields(cls)}
    values = {k: _unbytes(v) for k, v in data.items() if k in names}
    if cls is StreamEnd:
        values["usage"] = _usage(values.get("usage") or {})
    event: StreamEvent = cls(**values)
    return event


def decode(raw: bytes) -> CachedReply:
    data = orjson.loads(raw)
    r = dict(data["r"])
    r["usage"] = _usage(r.get("usage") or {})
    r["tool_calls"] = [ToolCall(**c) for c in r.get("tool_calls") or ()]
    r["raw"] = _unbytes(r.get("raw"))
    names = {f.name for f in fields(ChatResponse)}
    response = ChatResponse(**{k: v for k, v in r.items() if k in names})
    events = None if data.get("e") is None else tuple(_event(e) for e in data["e"])
    return CachedReply(response, events, size=int(data.get("n") or 0))


class RedisCache:
    """ResponseCache on `client`; `local` serves (per process) while Redis is unreachable."""

    def __init__(self, client: Redis, prefix: str, url: str, *, ttl_s: float, max_bytes: int) -> None:
        self._client, self.shown = client, redact(url)
        self.ttl_s, self.max_bytes = ttl_s, max_bytes
        base = f"{prefix}{{cache}}:"
        self._entry, self._index = base + "e:", [base + "lru", base + "sz", base + "bytes"]
        self._get = client.register_script(GET)
        self._put = client.register_script(PUT)
        self.local = MemoryCache(ttl_s=ttl_s, max_bytes=max_bytes)
        self._down_until = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.hits = self.misses = self.stored = self.evicted = self.skipped = 0
        self.error: str | None = None

    @property
    def shared(self) -> bool:
        return time.monotonic() >= self._down_until

    def _lost(self, exc: BaseException) -> None:
        if self.shared:
            log.warning("response cache falls back to this process's memory: redis %s unreachable (%s)",
                        self.shown, exc)
        self.error = str(exc) or type(exc).__name__
        self._down_until = time.monotonic() + RETRY_S

    async def lookup(self, key: str) -> CachedReply | None:
        from redis.exceptions import RedisError  # unreachable, timed out, or an error reply (e.g. OOM)

        if not self.shared:
            return self.local.get(key)
        try:
            raw = await self._get(keys=[self._entry + key, self._index[0]])
        except (RedisError, OSError) as exc:
            self._lost(exc)
            return self.local.get(key)
        if raw is None:
            self.misses += 1
            return None
        try:
            reply = decode(raw)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:  # not ours, or an older shape
            log.warning("response cache: ignoring an unreadable entry (%s)", exc)
            self.misses += 1
            return None
        self.hits += 1
        return reply

    def put(self, key: str, reply: CachedReply) -> None:
        if reply.size > self.max_bytes // 4:  # one answer may not flush a quarter of the cache
            return
        if not self.shared:
            self.local.put(key, reply)
            return
        if len(self._tasks) >= MAX_PENDING:
            self.skipped += 1
            return
        task = asyncio.get_running_loop().create_task(self._store(key, reply))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _store(self, key: str, reply: CachedReply) -> None:
        from redis.exceptions import RedisError  # unreachable, timed out, or an error reply (e.g. OOM)

        try:
            self.evicted += int(await self._put(
                keys=[self._entry + key, *self._index],
                args=[encode(reply), reply.size, max(1, int(self.ttl_s * 1000)), self.max_bytes]))
            self.stored += 1
        except (RedisError, OSError) as exc:
            self._lost(exc)
            self.local.put(key, reply)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": "redis", "state": "shared" if self.shared else
                               "per-process (redis unreachable)", "max_bytes": self.max_bytes, "ttl_s": self.ttl_s,
                               "hits": self.hits, "misses": self.misses, "stored": self.stored,
                               "evicted": self.evicted}
        if self.skipped:
            out["skipped"] = self.skipped
        if not self.shared:
            out["local"] = self.local.status()
        return out


__all__ = ["RedisCache", "decode", "encode"]
