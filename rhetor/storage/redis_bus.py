"""The change bus: one Redis pub/sub channel (`<prefix>bus`) that tells every worker and replica that shared state
changed, so each drops what it caches — templates, caller keys, budgets, the running config — and mirrors what
must stay cheap to read (breakers and Retry-After cool-downs).

    bus.subscribe("templates", store.reload)    # async: coalesced, re-run once if more changes came meanwhile
    bus.subscribe("breaker", mirror.apply)      # sync: called with each message's data, inline
    bus.publish("templates")                    # after this process changed them; never blocks the caller

A message is `{"topic", "from", "data"}` in JSON; a process ignores its own. Publishing is off the hot path (a
bounded queue drained by one task: a full queue drops the oldest note and counts it). The listener reconnects
with a short backoff when Redis goes away; when it is back every subscriber runs once (`resync`), because
messages sent meanwhile were lost — the changes themselves are in the shared stores. Without Redis `LocalBus`
takes the same calls and does nothing (one process: its own changes are already applied). Knows redis-py and
JSON; nothing of what the topics mean.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import orjson

from rhetor.storage.urls import redact

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("rhetor.storage")
Callback = Callable[[dict[str, Any]], Awaitable[None] | None]
TOPICS: Final = ("templates", "keys", "budgets", "config", "breaker")
QUEUE_MAX: Final = 1024  # notes waiting to be published
RETRY_S: Final = 1.0  # between reconnection attempts of the listener


class LocalBus:
    """No Redis: nothing to tell anyone. Same calls as RedisBus."""

    shared = False
    id = "local"

    def subscribe(self, topic: str, callback: Callback) -> None:
        pass

    def publish(self, topic: str, data: dict[str, Any] | None = None) -> None:
        pass

    def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {"backend": "none"}


class RedisBus:
    """Pub/sub on `client` (a connection of its own is taken for listening) under `prefix`."""

    def __init__(self, client: Redis, prefix: str, url: str) -> None:
        self._client, self.channel, self.shown = client, f"{prefix}bus", redact(url)
        self.id = secrets.token_hex(8)  # this process, so it can skip its own messages
        self._subs: dict[str, list[Callback]] = {}
        self._queue: deque[bytes] = deque(maxlen=QUEUE_MAX)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._running: dict[int, asyncio.Task[None]] = {}  # an async callback's refresh in progress
        self._again: set[int] = set()  # ... and asked again while it ran
        self._loose: set[asyncio.Task[None]] = set()  # coroutines returned by plain callbacks
        self.listening = False
        self.dropped = self.received = self.sent = 0
        self.error: str | None = None
        self.down_since: float | None = None

    @property
    def shared(self) -> bool:
        return self.listening

    def subscribe(self, topic: str, callback: Callback) -> None:
        self._subs.setdefault(topic, []).append(callback)

    def publish(self, topic: str, data: dict[str, Any] | None = None) -> None:
        """Tell the other processes; returns at once (the queue is drained by the publisher task)."""
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1  # the oldest note goes: the stores hold the truth, pollers catch up
        self._queue.append(orjson.dumps({"topic": topic, "from": self.id, "data": data or {}}))
        self._wake.set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listen(), name="rhetor-bus-listen"),
                       loop.create_task(self._publish(), name="rhetor-bus-publish")]

    async def close(self) -> None:
        for task in [*self._tasks, *self._running.values(), *self._loose]:
            task.cancel()
        for task in [*self._tasks, *self._running.values(), *self._loose]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    def status(self) -> dict[str, Any]:
        return {"channel": self.channel, "state": "listening" if self.listening else "reconnecting",
                "received": self.received, "sent": self.sent, "dropped": self.dropped,
                **({"error": self.error} if self.error and not self.listening else {})}

    # -- publishing -------------------------------------------------------------------------------------
    async def _publish(self) -> None:
        from redis.exceptions import RedisError

        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                message = self._queue[0]
                try:
                    await self._client.publish(self.channel, message)
                except (RedisError, OSError) as exc:
                    self.error = f"publish: {exc}"
                    await asyncio.sleep(RETRY_S)  # kept queued (bounded): sent when Redis answers again
                    continue
                self._queue.popleft()
                self.sent += 1

    # -- listening --------------------------------------------------------------------------------------
    async def _listen(self) -> None:
        from redis.exceptions import RedisError

        first = True
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.listening, self.error = True, None
                if not first:
                    log.warning("change bus: redis %s answers again; re-reading shared state", self.shown)
                    self._resync()
                first, self.down_since = False, None
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._dispatch(message.get("data"))
            except (RedisError, OSError) as exc:
                if self.listening or self.down_since is None:
                    log.warning("change bus: redis %s unreachable (%s); each process keeps its own state until "
                                "it answers", self.shown, exc)
                    self.down_since = time.monotonic()
                self.listening, self.error, first = False, str(exc) or type(exc).__name__, False
                await asyncio.sleep(RETRY_S)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _dispatch(self, raw: Any) -> None:
        try:
            message = orjson.loads(raw)
            topic, origin, data = message["topic"], message["from"], message.get("data") or {}
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("change bus: ignoring a malformed message on %s", self.channel)
            return
        if origin == self.id:
            return
        self.received += 1
        for callback in self._subs.get(topic, ()):
            self._call(callback, data)

    def _resync(self) -> None:
        """Redis came back: messages sent meanwhile are lost, so every subscriber re-reads once."""
        for topic, callbacks in self._subs.items():
            for callback in callbacks:
                self._call(callback, {"resync": True, "topic": topic})

    def _call(self, callback: Callback, data: dict[str, Any]) -> None:
        if not inspect.iscoroutinefunction(callback):
            try:
                result = callback(data)
            except Exception:
                log.exception("change bus: a subscriber failed")
                return
            if inspect.isawaitable(result):  # a plain function that returned a coroutine: run it, tracked
                if len(self._loose) >= QUEUE_MAX:
                    getattr(result, "close", lambda: None)()
                    self.dropped += 1
                    return
                task = asyncio.get_running_loop().create_task(_logged(result))
                self._loose.add(task)
                task.add_done_callback(self._loose.discard)
            return
        slot = id(callback)
        if slot in self._running:  # a refresh is running: run once more after it, however many came meanwhile
            self._again.add(slot)
            return
        task = asyncio.get_running_loop().create_task(self._refresh(callback, data, slot))
        self._running[slot] = task

    async def _refresh(self, callback: Callback, data: dict[str, Any], slot: int) -> None:
        try:
            while True:
                self._again.discard(slot)
                try:
                    await callback(data)  # type: ignore[misc]
                except Exception:
                    log.exception("change bus: a subscriber failed")
                if slot not in self._again:
                    return
        finally:
            self._running.pop(slot, None)


async def _logged(call: Awaitable[Any]) -> None:
    try:
        await call
    except Exception:
        log.exception("change bus: a subscriber failed")


__all__ = ["TOPICS", "LocalBus", "RedisBus"]
