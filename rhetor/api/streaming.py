"""The one streaming response of the web layer: Starlette's StreamingResponse, made to stop when the client goes.

Two gaps closed:
- A producer that never waits (the simulated provider at delay 0, an upstream whose bytes are already
  buffered) never lets the event loop run, so the server never learns the client is gone: writes to the dead
  transport are dropped silently and the whole stream is generated anyway — a closed 3 MB stream burned its
  full CPU and left ~25 MB resident, and it starved every other connection meanwhile. One loop turn after
  each chunk lets the disconnect (and other clients) in.
- On disconnect Starlette cancels the sending task and abandons the body iterator at a `yield`; its `finally`
  blocks (closing the upstream response, recording the turn) then wait for the garbage collector. Here the
  iterator is closed as soon as the response ends, however it ends.
A stalled (not closed) reader is already bounded by uvicorn's flow control: sends wait once the transport
holds 64 KiB. Knows nothing of SSE framing, shapes or providers.
"""

from __future__ import annotations

import asyncio
import inspect
import logging

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

log = logging.getLogger("rhetor")
CLOSE_BUDGET_S = 10.0  # the stream's cleanup (upstream close, turn record) must finish within this


class ClosingStreamingResponse(StreamingResponse):
    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for chunk in self.body_iterator:
            if not isinstance(chunk, bytes | memoryview):
                chunk = chunk.encode(self.charset)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await asyncio.sleep(0)  # one loop turn: a disconnect is noticed even if the producer never waits
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                # shielded: also when this very task is being cancelled; bounded: every wait has a timeout
                with anyio.move_on_after(CLOSE_BUDGET_S, shield=True):
                    try:
                        result = aclose()
                        if inspect.isawaitable(result):
                            await result
                    except Exception:  # the stream's own cleanup failed: the response is over regardless
                        log.exception("closing a stream's body failed")


__all__ = ["ClosingStreamingResponse"]
