"""The floor: a do-nothing pass-through proxy on Rhetor's own stack, to measure Rhetor against in the same run.

A raw ASGI app (no framework) on uvicorn with httptools and uvloop — the server Rhetor runs on — that forwards
each request's body to the upstream through one pooled aiohttp session and relays the reply byte for byte
(status, content type, and the body chunk by chunk, so an SSE stream's first byte is relayed as it arrives).
Whatever Rhetor adds beyond this app's cost is Rhetor's own Python work.

    .venv/bin/python benchmarks/floor.py PORT UPSTREAM_BASE     # e.g. 8001 http://127.0.0.1:9000

Knows nothing of Rhetor: the request path is the upstream's path (`/v1/chat/completions`, `/v1/messages`).
"""

from __future__ import annotations

import sys
from typing import Any

import aiohttp
import uvicorn

Scope = dict[str, Any]


class Floor:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.session = aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60), auto_decompress=False)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self.session is not None:
                        await self.session.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        assert self.session is not None
        async with self.session.post(self.upstream + scope["path"], data=body,
                                     headers={"content-type": "application/json"}) as reply:
            await send({"type": "http.response.start", "status": reply.status,
                        "headers": [(b"content-type", reply.headers.get("content-type", "").encode())]})
            async for chunk in reply.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def main() -> None:
    port, upstream = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(Floor(upstream), host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
