"""The response cache: exact-match replies keyed by the normalized request (provider, model, system, messages,
tools, tool choice, response format and every sampling parameter), opt-in per route (`"cache": true` in
tasks.json), per key, or per request (`x-rhetor-cache: use|refresh|off`).

A reply is stored only when it completed: never an error, never a cancelled or cut stream. A streamed reply
keeps its events, so a hit replays the same chunks in the caller's protocol; a non-streamed one is replayed as
one text delta and the end. Entries expire after a TTL and the whole cache is bounded in bytes (least recently
used evicted first). `ResponseCache` is the protocol: the in-process LRU here, one shared by every replica on
Redis (rhetor.storage.redis_cache). Knows the normalized types only; nothing of HTTP, fronts, routing or prices.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import orjson

from rhetor.errors import InvalidRequestError
from rhetor.types import ChatRequest, ChatResponse, StreamEnd, StreamEvent, TextDelta, ToolCall, ToolCallDelta

CacheMode = Literal["use", "refresh", "off"]
MODES: tuple[CacheMode, ...] = ("use", "refresh", "off")
HEADER = "x-rhetor-cache"
_OVERHEAD = 256  # bytes counted per entry on top of its text


def cache_mode(value: str | None, param: str = HEADER) -> CacheMode | None:
    """A request's cache directive, checked: `use`, `refresh`, `off` (None = not given)."""
    if value is None:
        return None
    mode = value.strip().lower()
    if mode not in MODES:
        raise InvalidRequestError(f"{param} must be one of use, refresh, off; got {value[:40]!r}", param=param)
    return mode


def _default(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {k: getattr(value, k) for k in value.__dataclass_fields__}
    raise TypeError(type(value).__name__)


def cache_key(provider: str, model: str, request: ChatRequest) -> str:
    """The exact-match key: every field that shapes the answer, never the timeout or the end user id."""
    messages = [(m.role, m.content, m.tool_calls, m.tool_call_id, m.name, m.is_error) for m in request.messages]
    data = (provider, model, request.system, messages, request.tools, request.tool_choice, request.response_format,
            request.temperature, request.top_p, request.max_tokens, request.stop, request.seed,
            sorted(request.extra.items()))
    raw = orjson.dumps(data, default=_default, option=orjson.OPT_NON_STR_KEYS)
    return hashlib.blake2b(raw, digest_size=20).hexdigest()


@dataclass(slots=True)
class CachedReply:
    response: ChatResponse  # the whole answer (assembled from the events when it was streamed)
    events: tuple[StreamEvent, ...] | None = None  # the stream's own events, replayed as they came
    stored_at: float = 0.0
    size: int = 0

    def replay(self) -> AsyncIterator[StreamEvent]:
        return _replay(self.events if self.events is not None else synthesized(self.response))


async def _replay(events: Sequence[StreamEvent]) -> AsyncIterator[StreamEvent]:
    for event in events:
        yield replace(event)  # a copy: a front may not change what the next hit replays


def synthesized(r: ChatResponse) -> tuple[StreamEvent, ...]:
    """A non-streamed answer as stream events: its text, its tool calls, the end."""
    out: list[StreamEvent] = [TextDelta(r.content)] if r.content else []
    out += [ToolCallDelta(i, c.id, c.name, c.arguments) for i, c in enumerate(r.tool_calls)]
    out.append(StreamEnd(r.finish_reason, replace(r.usage), r.model, stop_sequence=r.stop_sequence))
    return tuple(out)


def assembled(events: Sequence[StreamEvent], provider: str, model: str, simulated: bool) -> ChatResponse:
    """A completed stream's events as one answer (for a non-streamed hit on a streamed entry)."""
    text: list[str] = []
    calls: dict[int, list[str]] = {}
    end = StreamEnd()
    for e in events:
        if isinstance(e, TextDelta):
            text.append(e.text)
        elif isinstance(e, ToolCallDelta):
            call = calls.setdefault(e.index, [e.id or "", e.name or "", ""])
            call[0], call[1] = call[0] or e.id or "", call[1] or e.name or ""
            call[2] += e.arguments
        elif isinstance(e, StreamEnd):
            end = e
    return ChatResponse("".join(text), end.model or model, provider, end.finish_reason, replace(end.usage), simulated,
                        [ToolCall(i, n, a or "{}") for i, n, a in calls.values()], end.stop_sequence)


def reply_size(r: ChatResponse, events: Sequence[StreamEvent] | None) -> int:
    size = _OVERHEAD + len(r.content) + sum(len(c.arguments) + len(c.name) for c in r.tool_calls)
    if events is not None:
        size += sum(len(e.text) if isinstance(e, TextDelta) else len(getattr(e, "arguments", "")) for e in events)
        size += 64 * len(events)
    return size


class ResponseCache(Protocol):
    async def lookup(self, key: str) -> CachedReply | None: ...

    def put(self, key: str, reply: CachedReply) -> None: ...

    def status(self) -> dict[str, Any]: ...


class MemoryCache:
    """An LRU of replies bounded in bytes, each entry living `ttl_s`."""

    def __init__(self, *, ttl_s: float = 3600.0, max_bytes: int = 64 * 2**20) -> None:
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, CachedReply] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = self.stored = self.evicted = 0

    def get(self, key: str) -> CachedReply | None:
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry.stored_at > self.ttl_s:
            if entry is not None:
                self._drop(key)
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    async def lookup(self, key: str) -> CachedReply | None:
        return self.get(key)

    def put(self, key: str, reply: CachedReply) -> None:
        if reply.size > self.max_bytes // 4:  # one answer may not flush a quarter of the cache
            return
        if key in self._entries:
            self._drop(key)
        reply.stored_at = time.monotonic()
        self._entries[key] = reply
        self.bytes += reply.size
        self.stored += 1
        while self.bytes > self.max_bytes and self._entries:
            self._drop(next(iter(self._entries)))
            self.evicted += 1

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        self.bytes -= entry.size

    def __len__(self) -> int:
        return len(self._entries)

    def status(self) -> dict[str, Any]:
        return {"entries": len(self._entries), "bytes": self.bytes, "max_bytes": self.max_bytes, "ttl_s": self.ttl_s,
                "hits": self.hits, "misses": self.misses, "stored": self.stored, "evicted": self.evicted}


__all__ = ["HEADER", "MODES", "CacheMode", "CachedReply", "MemoryCache", "ResponseCache", "assembled", "cache_key",
           "cache_mode", "reply_size", "synthesized"]
