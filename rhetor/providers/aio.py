"""aiohttp-specific tuning of the upstream client: the ClientSession that rhetor.providers.http sends through,
with a subclass of aiohttp's internals that cuts per-request CPU without changing when a read times out.

- `LazyReadTimeout` (the connector's protocol): aiohttp re-arms the `sock_read` timer - a cancelled TimerHandle
  and a new one - at every request and every network read. This keeps one timer per connection and moves a
  deadline; the timer, when it fires, compares the clock with the deadline and re-arms for the remaining time,
  so a stalled upstream still times out `sock_read` seconds after its last byte (before the headers or
  mid-body, streaming or not).

It copies the shape of aiohttp's own code, so it is used only with the aiohttp release we pin
(requirements.lock, PINNED); any other version gets aiohttp's stock class. Imported with the first upstream
session (aiohttp is lazy, rhetor.lazy). Knows nothing of providers, vendors, or Rhetor's errors.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, cast

import aiohttp
from aiohttp.client_proto import ResponseHandler

if TYPE_CHECKING:
    import asyncio


PINNED = "3.14."  # the aiohttp release line the tuned class was copied from (requirements.lock: aiohttp==3.14.5)
TUNED = aiohttp.__version__.startswith(PINNED)


class LazyReadTimeout(ResponseHandler):
    """aiohttp's ResponseHandler with one read-timeout timer per connection: see the module's docstring.

    `_deadline` is when the current read times out (None: no read pending); `_armed_at` is when the timer, if
    any (`_read_timeout_handle`), fires. The timer never fires later than the deadline: a deadline earlier than
    the armed time (a shorter `sock_read` on a reused connection) re-arms it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._deadline: float | None = None
        self._armed_at = 0.0

    def _reschedule_timeout(self) -> None:
        timeout = self._read_timeout
        if not timeout:
            self._deadline = None
            return
        deadline = self._deadline = self._loop.time() + timeout
        handle = self._read_timeout_handle
        if handle is None or self._armed_at > deadline:
            if handle is not None:
                handle.cancel()
            self._armed_at = deadline
            self._read_timeout_handle = self._loop.call_at(deadline, self._timer_fired)

    def start_timeout(self) -> None:
        self._reschedule_timeout()

    def _drop_timeout(self) -> None:
        self._deadline = None  # the timer stays armed: it finds no deadline when it fires

    def _timer_fired(self) -> None:
        self._read_timeout_handle = None
        deadline = self._deadline
        if deadline is None:
            return
        if self._loop.time() < deadline:  # data came since the timer was armed: wait for the rest
            self._armed_at = deadline
            self._read_timeout_handle = self._loop.call_at(deadline, self._timer_fired)
            return
        self._deadline = None
        self._on_read_timeout()

    def connection_lost(self, exc: BaseException | None) -> None:
        handle = self._read_timeout_handle
        if handle is not None:  # a closed connection holds no timer (nor the loop a reference to it)
            handle.cancel()
            self._read_timeout_handle = None
        super().connection_lost(exc)


def new_session(headers: dict[str, str], *, read_bufsize: int) -> aiohttp.ClientSession:
    """A pooled session for one upstream, tuned when aiohttp is the pinned release."""
    connector = aiohttp.TCPConnector(limit=512, keepalive_timeout=30, ttl_dns_cache=300)
    extra: dict[str, Any] = {}
    if TUNED:
        connector._factory = cast("functools.partial[ResponseHandler]",
                                  functools.partial(LazyReadTimeout, loop=connector._loop))
    return aiohttp.ClientSession(connector=connector, headers=headers, read_bufsize=read_bufsize,
                                 auto_decompress=True, **extra)


__all__ = ["PINNED", "TUNED", "LazyReadTimeout", "new_session"]
