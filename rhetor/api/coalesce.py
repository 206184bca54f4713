"""Fewer writes per HTTP response: `HeadWithBody`, the transport uvicorn's response cycle writes to (set by
rhetor.api.protocols.GuardedHttpProtocol for each request), holds a response's head until its body's first write.
Knows asyncio transports only: nothing of uvicorn's classes, routes or streams.
"""

from __future__ import annotations

import asyncio
from typing import Any


class HeadWithBody:
    """One response's transport as uvicorn's response cycle sees it: uvicorn writes the head (status line and
    headers) at `http.response.start` and the body at the next send, two system calls where one does. The head is
    held and goes out with the first body write; if none comes within this step of the app, at the loop's next
    callback (a response that starts and then waits loses no time). A 1xx (100 Continue) is never held."""

    __slots__ = ("_held", "_loop", "_transport", "_wrote")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._held: bytes | None = None
        self._wrote = False

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif self._wrote or data[9:10] == b"1":
            self._transport.write(data)
        else:
            self._wrote = True
            self._held = data
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


__all__ = ["HeadWithBody"]
