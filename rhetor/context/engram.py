"""An optional Engram mirror around any ContextStore: every stored turn is copied to Engram in the background.

SQLite (the wrapped store) stays the source of truth: reads, deletes and exports go to it only, and a write
returns as soon as it is there. After each turn the context id joins a bounded, de-duplicated queue; a
worker exports the context and sends it to Engram's `POST /memory/store` (namespace `rhetor_contexts`,
key = context id, value = the context's R1 JSON text — contracts §4). A down or slow Engram never blocks
or fails a request: the worker retries with capped backoff, a full queue drops (and counts) new ids, and
`status()` says whether Engram is reachable. Knows nothing of FastAPI, routing or providers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import orjson

from rhetor.context.store import ContextStore, ContextSummary, NewMessage, StoredMessage, utc_now

if TYPE_CHECKING:
    import httpx
else:  # httpx loads with the first client (rhetor.lazy): a start without ENGRAM_URL never imports it
    from rhetor.lazy import httpx

log = logging.getLogger("rhetor.engram")
NAMESPACE = "rhetor_contexts"


class EngramMirror:
    """A ContextStore that delegates to `inner` and mirrors each written context to Engram at `url`."""

    def __init__(self, inner: ContextStore, url: str, *, api_key: str | None = None, timeout_s: float = 5.0,
                 queue_max: int = 1000, retry_base_s: float = 0.5, retry_max_s: float = 30.0) -> None:
        self.inner = inner
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout_s
        self._queue_max = queue_max
        self._retry_base, self._retry_max = retry_base_s, retry_max_s
        self._pending: dict[str, None] = {}  # insertion-ordered set of context ids to send
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None
        self.state = "idle"  # idle (nothing sent yet) | ok | unreachable
        self.mirrored = self.failures = self.dropped = 0
        self.last_error: str | None = None
        self.last_success: str | None = None

    # -- ContextStore ------------------------------------------------------------------------------------
    async def open(self) -> None:
        await self.inner.open()
        # No network here: the worker only talks to Engram once there is something to send.
        self._http = httpx.AsyncClient(timeout=self._timeout, headers=self._headers, trust_env=False)
        self._task = asyncio.create_task(self._worker(), name="engram-mirror")

    async def close(self, flush_s: float = 2.0) -> None:
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), flush_s)  # a short best-effort flush
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        await self.inner.close()

    async def append_turn(self, context_id: str, messages: list[NewMessage], *, status: str = "complete") -> None:
        await self.inner.append_turn(context_id, messages, status=status)
        self._enqueue(context_id)

    async def history(self, context_id: str, *, complete_only: bool = True) -> list[StoredMessage]:
        return await self.inner.history(context_id, complete_only=complete_only)

    async def page(self, context_id: str, *, offset: int = 0, limit: int = 50) -> tuple[list[StoredMessage], int]:
        return await self.inner.page(context_id, offset=offset, limit=limit)

    async def list_contexts(self) -> list[ContextSummary]:
        return await self.inner.list_contexts()

    async def get_summary(self, context_id: str) -> ContextSummary | None:
        return await self.inner.get_summary(context_id)

    async def delete(self, context_id: str) -> bool:
        self._pending.pop(context_id, None)  # Engram has no delete route: its copy simply stops being updated
        return await self.inner.delete(context_id)

    async def export(self, context_id: str) -> dict[str, Any] | None:
        return await self.inner.export(context_id)

    # -- mirror ------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {"url": self.url, "state": self.state, "pending": len(self._pending), "mirrored": self.mirrored,
                "failures": self.failures, "dropped": self.dropped, "last_error": self.last_error,
                "last_success": self.last_success}

    def _enqueue(self, context_id: str) -> None:
        if context_id in self._pending:
            return  # already queued; the export taken when it is sent includes this turn
        if len(self._pending) >= self._queue_max:
            self.dropped += 1
            return
        self._pending[context_id] = None
        self._idle.clear()
        self._wake.set()

    async def _send(self, context_id: str) -> None:
        data = await self.inner.export(context_id)
        if data is None:
            return  # deleted meanwhile
        assert self._http is not None
        body = {"key": context_id, "value": orjson.dumps(data).decode(), "namespace": NAMESPACE,
                "metadata": {"source": "rhetor", "updated_at": data.get("updated_at"),
                             "message_count": len(data.get("messages", []))}}
        r = await self._http.post(f"{self.url}/memory/store", json=body)
        if r.status_code >= 400:
            raise httpx.HTTPStatusError(f"Engram answered {r.status_code}", request=r.request, response=r)

    async def _worker(self) -> None:
        delay = self._retry_base
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                context_id = next(iter(self._pending))
                try:
                    await self._send(context_id)
                except Exception as exc:  # down, slow, refusing, or a bug: never kill the worker
                    self.failures += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"[:200]
                    if self.state != "unreachable":
                        log.warning("Engram at %s unreachable (%s); contexts stay in SQLite, retrying",
                                    self.url, self.last_error)
                    self.state = "unreachable"
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._retry_max)
                    continue
                self._pending.pop(context_id, None)
                self.mirrored += 1
                self.state, self.last_success, delay = "ok", utc_now(), self._retry_base
            self._idle.set()


__all__ = ["NAMESPACE", "EngramMirror"]
