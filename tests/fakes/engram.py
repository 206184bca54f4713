"""A fake Engram (contracts §4, June API) over real HTTP: `POST /memory/store {key, value, namespace, metadata}`.

`mode` switches its behaviour while it runs: "up" stores, "down" answers 503, "slow" waits `slow_s` first
(longer than Rhetor's Engram timeout). `stored` maps (namespace, key) to the last value received.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Body, FastAPI, HTTPException


class FakeEngram:
    def __init__(self, mode: str = "up", slow_s: float = 2.0) -> None:
        self.mode = mode
        self.slow_s = slow_s
        self.stored: dict[tuple[str, str], str] = {}
        self.attempts = 0
        self.app = self._build()

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.post("/memory/store")
        async def store(body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
            self.attempts += 1
            if self.mode == "down":
                raise HTTPException(503, "engram down")
            if self.mode == "slow":
                await asyncio.sleep(self.slow_s)
            self.stored[(body.get("namespace", "conversations"), body["key"])] = body["value"]
            return {"success": True, "id": body["key"]}

        @app.get("/health")
        async def health() -> dict[str, Any]:
            return {"status": "ok"}

        return app
