"""Budget spend counters and reservations on Redis: one running spend per (subject, period) for every replica.

Each window is a hash `<prefix>{bg}:w:<scope>:<name>:<period>:<start>` — `u` USD spent, `t` tokens, `hu`/`ht`
held by requests in flight, `s` seeded from the ledger — expiring an hour after its period ends. Admission is
one Lua script (RESERVE): read every window the request's budgets count, refuse if a `block` limit is already
reached (spent + held), else add the estimate to each window's held figures, atomically — so requests on any
number of replicas overshoot a block budget by at most those in flight when it was crossed. Each reservation is
a hold with a lease (`<prefix>{bg}:holds`, a sorted set by expiry, and `<prefix>{bg}:hold`): a replica killed
mid-request does not keep its estimates held past the lease. A request's end enqueues its real cost (ADD) and
its release (RELEASE) in order on one writer task, which sends what is queued as one MULTI (off the hot path).

Redis unreachable: `reserve` returns None (the book then judges against its local mirror, refreshed from Redis
every few seconds, plus what this process spends), costs are summed per window and releases kept (both
bounded) and sent when Redis answers — reconciled, and `status()` says how much is waiting. All keys carry the
`{bg}` hash tag (one Redis Cluster slot). Knows redis-py and window names; nothing of budgets' rules or HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from rhetor.storage.urls import redact

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("rhetor.storage")
RETRY_S: Final = 2.0
QUEUE_MAX: Final = 10_000  # ADD / RELEASE operations waiting for Redis
KEEP_S: Final = 3600  # a window outlives its period by this much

_RELEASE_FN = """
local function release(h)
  local parts = {}
  for p in string.gmatch(h, '%S+') do parts[#parts + 1] = p end
  local usd, tok = tonumber(parts[1]), tonumber(parts[2])
  for i = 3, #parts do
    if redis.call('EXISTS', parts[i]) == 1 then
      local hu = tonumber(redis.call('HINCRBYFLOAT', parts[i], 'hu', -usd))
      if hu < 1e-12 then redis.call('HSET', parts[i], 'hu', 0) end
      if tonumber(redis.call('HINCRBY', parts[i], 'ht', -tok)) < 0 then redis.call('HSET', parts[i], 'ht', 0) end
    end
  end
end
local function reap(zset, hash, now)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', zset, '-inf', now, 'LIMIT', 0, 16)) do
    local h = redis.call('HGET', hash, id)
    if h then release(h) end
    redis.call('HDEL', hash, id)
    redis.call('ZREM', zset, id)
  end
end
"""
# KEYS: holds zset, holds hash, window...   ARGV: usd, tokens, hold id, lease ms, then per window: block usd,
# block tokens (-1: none), expire-at (unix s). Returns {reserved 0|1, then per window u, t, hu, ht as strings}.
RESERVE: Final = _RELEASE_FN + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
reap(KEYS[1], KEYS[2], now)
local usd, tok = tonumber(ARGV[1]), tonumber(ARGV[2])
local out, ok = {1}, 1
for i = 3, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 'u', 't', 'hu', 'ht')
  local u, tk, hu, ht = tonumber(v[1] or '0'), tonumber(v[2] or '0'), tonumber(v[3] or '0'), tonumber(v[4] or '0')
  local j = 5 + (i - 3) * 3
  local bu, bt = tonumber(ARGV[j]), tonumber(ARGV[j + 1])
  if (bu >= 0 and u + hu >= bu) or (bt >= 0 and tk + ht >= bt) then ok = 0 end
  out[#out + 1] = tostring(u); out[#out + 1] = tostring(tk); out[#out + 1] = tostring(hu); out[#out + 1] = tostring(ht)
end
out[1] = ok
if ok == 1 and (usd > 0 or tok > 0) then
  local names = {}
  for i = 3, #KEYS do
    redis.call('HINCRBYFLOAT', KEYS[i], 'hu', usd)
    redis.call('HINCRBY', KEYS[i], 'ht', tok)
    redis.call('EXPIREAT', KEYS[i], tonumber(ARGV[5 + (i - 3) * 3 + 2]))
    names[#names + 1] = KEYS[i]
  end
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[3])
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. table.concat(names, ' '))
end
return out
"""
RELEASE: Final = _RELEASE_FN + """
local h = redis.call('HGET', KEYS[2], ARGV[1])
if h then release(h) end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
return h and 1 or 0
"""
# KEYS: windows. ARGV: usd, tokens, only-if-unseeded (0|1), then expire-at per window.
ADD: Final = """
for i = 1, #KEYS do
  if ARGV[3] == '0' or redis.call('HSETNX', KEYS[i], 's', 1) == 1 then
    redis.call('HINCRBYFLOAT', KEYS[i], 'u', ARGV[1])
    redis.call('HINCRBY', KEYS[i], 't', ARGV[2])
    redis.call('EXPIREAT', KEYS[i], tonumber(ARGV[3 + i]))
  end
end
return 1
"""
WindowRef = tuple[str, str, str, float, float]  # (scope, name, period, start, end)


class SharedHold:
    """One reservation in Redis; `release` (once) queues its release behind the request's real cost."""

    __slots__ = ("_spend", "id")

    def __init__(self, spend: RedisSpend, hold_id: str) -> None:
        self._spend, self.id = spend, hold_id

    def release(self) -> None:
        hold_id, self.id = self.id, ""
        if hold_id:
            self._spend.enqueue(("release", hold_id))

    def __del__(self) -> None:  # a stream dropped before it was read never runs its end
        with contextlib.suppress(Exception):
            self.release()


class RedisSpend:
    def __init__(self, client: Redis, prefix: str, url: str, *, lease_s: float = 600.0) -> None:
        self._client, self.shown, self.lease_ms = client, redact(url), int(lease_s * 1000)
        base = f"{prefix}{{bg}}:"
        self._base, self._holds = base + "w:", [base + "holds", base + "hold"]
        self._reserve = client.register_script(RESERVE)
        self._release = client.register_script(RELEASE)
        self._add = client.register_script(ADD)
        self._queue: deque[tuple[Any, ...]] = deque()
        self._pending_add: dict[str, list[float]] = {}  # window -> [usd, tokens, expire-at] while Redis is away
        self._pending_release: set[str] = set()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._down_until = 0.0
        self._sending = False
        self.error: str | None = None
        self.dropped = 0

    @property
    def shared(self) -> bool:
        return time.monotonic() >= self._down_until

    @property
    def settled(self) -> bool:
        """Nothing queued, parked or being sent."""
        return not (self._queue or self._pending_add or self._pending_release or self._sending)

    def key(self, ref: WindowRef) -> str:
        scope, name, period, start, _ = ref
        return f"{self._base}{scope}:{name}:{period}:{int(start)}"

    def _lost(self, exc: BaseException) -> None:
        if self.shared:
            log.warning("budgets fall back to per-process counting: redis %s unreachable (%s); spend is kept "
                        "and reconciled when it answers", self.shown, exc)
        self.error = str(exc) or type(exc).__name__
        self._down_until = time.monotonic() + RETRY_S

    # -- admission (one round trip) ----------------------------------------------------------------------
    async def reserve(self, refs: list[WindowRef], blocks: list[tuple[float | None, int | None]], usd: float,
                      tokens: int) -> tuple[bool, list[tuple[float, int, float, int]], SharedHold | None] | None:
        """(admitted, figures per window before this request, its hold) — or None when Redis is unreachable."""
        from redis.exceptions import RedisError  # unreachable, timed out, or an error reply (e.g. OOM)

        if not self.shared:
            return None
        hold_id = secrets.token_hex(8)
        args: list[Any] = [repr(usd), tokens, hold_id, self.lease_ms]
        for ref, (bu, bt) in zip(refs, blocks, strict=True):
            args += [-1 if bu is None else repr(bu), -1 if bt is None else bt, int(ref[4]) + KEEP_S]
        try:
            out = await self._reserve(keys=[*self._holds, *(self.key(r) for r in refs)], args=args)
        except (RedisError, OSError) as exc:
            self._lost(exc)
            return None
        figures = [(float(out[i]), int(float(out[i + 1])), float(out[i + 2]), int(float(out[i + 3])))
                   for i in range(1, len(out), 4)]
        admitted = int(out[0]) == 1
        hold = SharedHold(self, hold_id) if admitted and (usd > 0 or tokens > 0) else None
        return admitted, figures, hold

    async def figures(self, refs: list[WindowRef]) -> list[tuple[float, int, float, int]] | None:
        """Spent and held per window (for the local mirror and the status), or None when unreachable."""
        from redis.exceptions import RedisError  # unreachable, timed out, or an error reply (e.g. OOM)

        if not refs or not self.shared:
            return None if refs else []
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for ref in refs:
                    pipe.hmget(self.key(ref), "u", "t", "hu", "ht")
                rows = await pipe.execute()
        except (RedisError, OSError) as exc:
            self._lost(exc)
            return None
        return [(float(u or 0), int(float(t or 0)), float(hu or 0), int(float(ht or 0))) for u, t, hu, ht in rows]

    # -- off the hot path ------------------------------------------------------------------------------------
    def add(self, refs: list[WindowRef], usd: float, tokens: int) -> None:
        """A request's real cost on its windows (queued behind nothing, ahead of its release)."""
        if refs and (usd or tokens):
            self.enqueue(("add", [self.key(r) for r in refs], usd, tokens, [int(r[4]) + KEEP_S for r in refs]))

    async def seed(self, refs: list[WindowRef], figures: list[tuple[float, int]]) -> None:
        """The ledger's spend for windows no replica has seeded yet (the first replica to start does it)."""
        for ref, (usd, tokens) in zip(refs, figures, strict=True):
            await self._add(keys=[self.key(ref)], args=[repr(usd), tokens, 1, int(ref[4]) + KEEP_S])

    def enqueue(self, op: tuple[Any, ...]) -> None:
        if len(self._queue) >= QUEUE_MAX:
            self._park(self._queue.popleft())  # kept for reconciliation rather than lost
        self._queue.append(op)
        if self._writer is None:
            with contextlib.suppress(RuntimeError):  # no running loop (a hold collected at exit)
                self._writer = asyncio.get_running_loop().create_task(self._write(), name="rhetor-budget-writer")
        self._wake.set()

    def _park(self, op: tuple[Any, ...]) -> None:
        """Redis away: sum costs per window, keep releases; both bounded by QUEUE_MAX."""
        if op[0] == "release":
            if len(self._pending_release) < QUEUE_MAX:
                self._pending_release.add(op[1])
            else:
                self.dropped += 1  # its lease frees it
            return
        _, keys, usd, tokens, expire = op
        for key, at in zip(keys, expire, strict=True):
            if key not in self._pending_add and len(self._pending_add) >= QUEUE_MAX:
                self.dropped += 1
                continue
            slot = self._pending_add.setdefault(key, [0.0, 0, at])
            slot[0] += usd
            slot[1] += tokens

    async def _write(self) -> None:
        from redis.exceptions import ConnectionError, RedisError, TimeoutError

        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self.shared:
                while self._queue:
                    self._park(self._queue.popleft())
                await asyncio.sleep(max(0.0, self._down_until - time.monotonic()))
                self._wake.set()
                continue
            batch = list(self._queue)
            self._queue.clear()
            parked_adds, parked_releases = self._pending_add, self._pending_release
            self._pending_add, self._pending_release = {}, set()
            self._sending = True
            try:
                async with self._client.pipeline(transaction=True) as pipe:
                    for key, (usd, tokens, at) in parked_adds.items():  # reconciled first: they happened first
                        await self._add(keys=[key], args=[repr(usd), int(tokens), 0, int(at)], client=pipe)
                    for hold_id in parked_releases:
                        await self._release(keys=self._holds, args=[hold_id], client=pipe)
                    for op in batch:
                        if op[0] == "add":
                            await self._add(keys=op[1], args=[repr(op[2]), op[3], 0, *op[4]], client=pipe)
                        else:
                            await self._release(keys=self._holds, args=[op[1]], client=pipe)
                    await pipe.execute()
                if parked_adds or parked_releases:
                    log.warning("budgets: redis %s answers again; %d windows' spend and %d releases reconciled",
                                self.shown, len(parked_adds), len(parked_releases))
                self.error = None
            except (ConnectionError, TimeoutError, OSError) as exc:  # not sent (or its reply lost): keep it all
                self._lost(exc)
                for key, (usd, tokens, at) in parked_adds.items():
                    self._park(("add", [key], usd, int(tokens), [at]))
                for hold_id in parked_releases:
                    self._park(("release", hold_id))
                for op in batch:
                    self._park(op)
                self._wake.set()
            except RedisError as exc:  # an error reply: EXEC ran the rest, so sending it again would count twice
                self.error = str(exc) or type(exc).__name__
                self.dropped += 1
                log.warning("budgets: redis %s refused a batch of spend updates (%s); its holds expire with "
                            "their lease", self.shown, exc)
            finally:
                self._sending = False

    async def drain(self, timeout_s: float = 2.0) -> None:
        """At shutdown: give the writer a moment to send what is queued."""
        deadline = time.monotonic() + timeout_s
        while not self.settled and self.shared and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.01)
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer
            self._writer = None

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": "shared" if self.shared else "per-process (redis unreachable)"}
        if self._pending_add or self._pending_release:
            out["unreconciled"] = {"windows": len(self._pending_add), "releases": len(self._pending_release)}
        if self.dropped:
            out["dropped"] = self.dropped
        if self.error and not self.shared:
            out["error"] = self.error
        return out


__all__ = ["RedisSpend", "SharedHold", "WindowRef"]
