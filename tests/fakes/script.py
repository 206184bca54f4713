"""What the OpenAI and Ollama fakes share: one-shot scripted behaviours (fail, cut, mid-stream error, delay)
consumed in order by the next requests, and raw-ASGI body helpers. Thread-safe: tests script from their own
thread while the fake serves from the server thread."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

# A cut waits this long after its last bytes: aiohttp drops bytes still unread when the connection breaks, so
# a cut in the same instant as the data would race the reader (real upstreams never cut that fast).
CUT_AFTER_S = 0.05


@dataclass(slots=True)
class Action:
    kind: str  # "fail" | "cut" | "error_event" | "delay"
    status: int = 0
    retry_after: float | None = None
    message: str | None = None
    after: int = 0
    clean: bool = False
    seconds: float = 0.0


class Script:
    """Scripting for a fake upstream; each vendor's fake turns an Action into its own wire format."""

    def __init__(self) -> None:
        self._script: deque[Action] = deque()
        self._lock = threading.Lock()

    def _add(self, action: Action, n: int) -> None:
        with self._lock:
            self._script.extend(replace(action) for _ in range(n))

    def fail_next(self, status: int, n: int = 1, retry_after: float | None = None,
                  message: str | None = None) -> None:
        """The next n chat requests answer `status` with the vendor's error body (and Retry-After if given)."""
        self._add(Action("fail", status=status, retry_after=retry_after, message=message), n)

    def cut_next(self, after_chunks: int, n: int = 1, *, clean: bool = False) -> None:
        """Streaming: `after_chunks` content chunks, then the connection drops (clean=True: the body ends properly
        but without the vendor's terminator). Non-stream: headers, then a drop."""
        self._add(Action("cut", after=after_chunks, clean=clean), n)

    def error_event_next(self, after_chunks: int) -> None:
        """Streaming: after `after_chunks` content chunks, the vendor's mid-stream error and the end of the body.
        Non-stream: a 500 with the same error."""
        self._add(Action("error_event", after=after_chunks), 1)

    def delay_next(self, seconds: float, n: int = 1) -> None:
        self._add(Action("delay", seconds=seconds), n)

    def _pop(self) -> Action | None:
        with self._lock:
            return self._script.popleft() if self._script else None


async def read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body


async def send_bytes(send: Any, status: int, body: bytes, content_type: bytes = b"application/json",
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
