"""Breakers and Retry-After cool-downs shared across replicas, with no Redis call on the hot path.

Each process keeps its own CircuitBreaker and Cooldowns (rhetor.routing) and reads only them when it routes.
This module makes them mirrors of one another: when this process opens a breaker (or an upstream asks it for
quiet), it publishes the fact on the change bus (topic `breaker`) and writes it to a Redis key that expires when
the window ends (`<prefix>br:{open|cool}:<provider>/<model>`); every other process applies the message to its
own mirror at once (`force_open`, `note(remote=True)`). A trial call that succeeds closes the breaker everywhere.
A process that starts — or whose bus reconnects after Redis was away — reads the keys still alive (their TTL is
Redis's clock, so replicas' clocks need not agree). Redis unreachable: each process keeps its own breakers (the
routing is unchanged; only the sharing stops) and /health says so. Knows redis-py, the bus and the routing
room's two classes; nothing of providers or HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

import orjson

from rhetor.routing.breaker import CircuitBreaker, Key
from rhetor.routing.cooldown import Cooldowns
from rhetor.storage.redis_bus import RedisBus

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("rhetor.storage")
TOPIC: Final = "breaker"
MAX_PENDING: Final = 256  # writes of breaker keys in flight; past this one is skipped (the bus message still goes)


class BreakerMirror:
    def __init__(self, client: Redis, prefix: str, bus: RedisBus, breaker: CircuitBreaker,
                 cooldowns: Cooldowns) -> None:
        self._client, self._prefix, self._bus = client, f"{prefix}br:", bus
        self.breaker, self.cooldowns = breaker, cooldowns
        self._tasks: set[asyncio.Task[Any]] = set()
        self.applied = 0  # messages from other replicas applied here
        self.error: str | None = None

    def attach(self) -> None:
        self.breaker.on_open = self._opened
        self.breaker.on_close = self._closed
        self.cooldowns.on_note = self._cooling
        self._bus.subscribe(TOPIC, self.apply)

    def detach(self) -> None:
        self.breaker.on_open = self.breaker.on_close = None
        self.cooldowns.on_note = None

    # -- this process's transitions -----------------------------------------------------------------------
    def _opened(self, key: Key, seconds: float) -> None:
        self._share("open", key, seconds)

    def _cooling(self, key: Key, seconds: float) -> None:
        self._share("cool", key, seconds)

    def _closed(self, key: Key) -> None:
        self._bus.publish(TOPIC, {"op": "close", "p": key[0], "m": key[1]})
        self._spawn(self._client.delete(self._name("open", key)))

    def _share(self, op: str, key: Key, seconds: float) -> None:
        self._bus.publish(TOPIC, {"op": op, "p": key[0], "m": key[1], "s": seconds})
        if seconds > 0:
            value = orjson.dumps({"p": key[0], "m": key[1]})
            self._spawn(self._client.set(self._name(op, key), value, px=max(1, int(seconds * 1000))))

    def _name(self, op: str, key: Key) -> str:
        return f"{self._prefix}{op}:{key[0]}/{key[1]}"

    # -- another process's ---------------------------------------------------------------------------------
    def apply(self, data: dict[str, Any]) -> None:
        if data.get("resync"):
            self._spawn(self.load())
            return
        op, key = data.get("op"), (str(data.get("p")), str(data.get("m")))
        seconds = float(data.get("s") or 0.0)
        if op == "open":
            self.breaker.force_open(key, seconds)
        elif op == "close":
            self.breaker.force_close(key)
        elif op == "cool":
            self.cooldowns.note(key, seconds, remote=True)
        else:
            return
        self.applied += 1

    async def load(self) -> None:
        """Apply the windows other processes opened that are still running (at start, and after a reconnect)."""
        from redis.exceptions import RedisError

        try:
            names = [n async for n in self._client.scan_iter(match=self._prefix + "*", count=200)]
            for name in names[:1024]:
                value, left_ms = await self._client.get(name), await self._client.pttl(name)
                if value is None or left_ms <= 0:
                    continue
                target = orjson.loads(value)
                key, seconds = (str(target["p"]), str(target["m"])), left_ms / 1000
                op = name.decode()[len(self._prefix):].split(":", 1)[0] if isinstance(name, bytes) else ""
                if op == "open":
                    self.breaker.force_open(key, seconds)
                elif op == "cool":
                    self.cooldowns.note(key, seconds, remote=True)
            self.error = None
        except (RedisError, OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
            self.error = str(exc) or type(exc).__name__
            log.warning("breakers: cannot read the shared breaker state (%s); this process keeps its own", exc)

    def _spawn(self, call: Any) -> None:
        if len(self._tasks) >= MAX_PENDING:
            call.close()
            return

        async def run() -> None:
            from redis.exceptions import RedisError

            try:
                await call
            except (RedisError, OSError) as exc:
                self.error = str(exc) or type(exc).__name__

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def status(self) -> dict[str, Any]:
        return {"applied_from_replicas": self.applied, **({"error": self.error} if self.error else {})}


__all__ = ["BreakerMirror"]
