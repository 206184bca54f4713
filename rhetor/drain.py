"""The drain of one gateway at shutdown: which streams and answers are still running, and the deadline that
ends the streams still open — each then yields its terminal StreamError(type="shutdown"), which every framer
renders as its protocol's final error frame, and is stored as `cancelled`.

The server (rhetor.api.health.RhetorServer) drives it: wait while `busy()` for up to RHETOR_SHUTDOWN_GRACE_S,
`expire()`, a short wait for the final frames to go out, and only then uvicorn's own (short) shutdown.
Knows nothing of HTTP, framing or providers; a stream is anything with an `expire()` method.
"""

from __future__ import annotations

from typing import Protocol

from rhetor.types import StreamError

SHUTDOWN_MESSAGE = ("Rhetor is shutting down: this stream was still running when the shutdown grace period "
                    "(RHETOR_SHUTDOWN_GRACE_S) ran out; retry the request")


def shutdown_error() -> StreamError:
    return StreamError(SHUTDOWN_MESSAGE, type="shutdown", retryable=True)


class Expirable(Protocol):
    def expire(self) -> None: ...


class Drain:
    def __init__(self) -> None:
        self.streams: set[Expirable] = set()
        self.calls = 0  # non-streamed answers in flight (they finish on their own; waited for, never cut)
        self.expired = False

    def busy(self) -> bool:
        return bool(self.streams) or self.calls > 0

    def expire(self) -> int:
        """End every open stream now (each yields shutdown_error() next); later streams end at their start.
        Returns how many streams were open."""
        self.expired = True
        open_now = list(self.streams)
        for stream in open_now:
            stream.expire()
        return len(open_now)


__all__ = ["SHUTDOWN_MESSAGE", "Drain", "Expirable", "shutdown_error"]
