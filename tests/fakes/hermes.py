"""A fake Hermes that enforces the documented contract (contracts §3), served over real HTTP.

`POST /api/register` needs name, version, type and endpoint (else 422) and returns a component id and an
HMAC-signed JSON token; given no `component_id` it invents one (`rhetor-rhetor-2e6ea7f8`), given one it
updates that entry. `POST /api/heartbeat` and `POST /api/unregister?component_id=` need the
`X-Authentication-Token` header (422 without it, 401 with a bad or expired token — tokens live
`token_ttl_s`); like the real Hermes, a heartbeat from a component it has forgotten still gets 200 (the
unregister of one gets 404). `POST /api/components/status` records announcements; `GET /api/components`,
`GET /api/components/{id or name}` and `POST /api/query` list. `restart()` forgets every registration, as a
restarted Hermes does (the secret stays, so old tokens still verify). Every call is recorded in `calls`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from fastapi import Body, FastAPI, Header, HTTPException, Query
from pydantic import BaseModel, Field

SECRET = b"tekton-secret-key"


class RegisterBody(BaseModel):
    component_id: str | None = None
    name: str
    version: str
    type: str
    endpoint: str
    capabilities: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)


class FakeHermes:
    def __init__(self) -> None:
        self.components: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.token_ttl_s = 3600.0
        self.app = self._build()

    def restart(self) -> None:
        self.components.clear()

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]

    def _token(self, cid: str) -> str:
        now = time.time()
        payload = {"component_id": cid, "token_id": uuid.uuid4().hex, "iat": now, "exp": now + self.token_ttl_s}
        text = json.dumps(payload, sort_keys=True)
        signature = hmac.new(SECRET, text.encode(), hashlib.sha256).hexdigest()
        return json.dumps({"payload": payload, "signature": signature})

    def _check(self, token: str, cid: str, *, known: bool = True) -> None:
        try:
            data = json.loads(token)
            text = json.dumps(data["payload"], sort_keys=True)
            good = hmac.compare_digest(hmac.new(SECRET, text.encode(), hashlib.sha256).hexdigest(), data["signature"])
        except (ValueError, KeyError, TypeError):
            good = False
        if not good or data["payload"]["component_id"] != cid or data["payload"]["exp"] < time.time():
            raise HTTPException(401, "Invalid authentication token")
        if known and cid not in self.components:
            raise HTTPException(404, f"Component {cid} not found")

    def _listed(self, capability: str | None = None, component_type: str | None = None) -> list[dict[str, Any]]:
        return [c for c in self.components.values()
                if (capability is None or capability in c["capabilities"])
                and (component_type is None or c["type"] == component_type)]

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.post("/api/register")
        async def register(body: RegisterBody) -> dict[str, Any]:
            cid = body.component_id or f"{body.name}-{body.type}-{uuid.uuid4().hex[:8]}"
            self.components[cid] = {**body.model_dump(), "component_id": cid, "status": "healthy",
                                    "registered_at": time.time(), "last_heartbeat": None}
            self.calls.append(("register", body.model_dump()))
            return {"success": True, "component_id": cid, "token": self._token(cid), "message": "registered"}

        @app.post("/api/heartbeat")
        async def heartbeat(body: dict[str, Any] = Body(...),  # noqa: B008
                            x_authentication_token: str = Header(...)) -> dict[str, Any]:
            cid = str(body.get("component_id"))
            self._check(x_authentication_token, cid, known=False)
            if cid in self.components:  # a forgotten component still gets 200, and stays forgotten
                self.components[cid]["last_heartbeat"] = time.time()
            self.calls.append(("heartbeat", body))
            return {"success": True}

        @app.post("/api/unregister")
        async def unregister(component_id: str = Query(...),
                             x_authentication_token: str = Header(...)) -> dict[str, Any]:
            self._check(x_authentication_token, component_id)
            del self.components[component_id]
            self.calls.append(("unregister", component_id))
            return {"success": True}

        @app.post("/api/components/status")
        async def status(body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
            self.statuses.append(body)
            self.calls.append(("status", body))
            return {"success": True}

        @app.get("/api/components")
        async def components() -> dict[str, Any]:
            items = self._listed()
            return {"total": len(items), "components": items}

        @app.get("/api/components/{name}")
        async def component(name: str) -> dict[str, Any]:
            self.calls.append(("lookup", name))
            found = self.components.get(name) or next(
                (c for c in self.components.values() if c["name"] == name), None)
            if found is None:
                raise HTTPException(404, f"Component {name} not found")
            return found

        @app.post("/api/query")
        async def query(body: dict[str, Any] = Body(default={})) -> list[dict[str, Any]]:  # noqa: B008
            return self._listed(body.get("capability"), body.get("component_type"))

        @app.get("/api/health")
        async def health() -> dict[str, Any]:
            return {"status": "healthy"}

        return app
