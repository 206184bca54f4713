"""A small async client for the Hermes service registry (contracts §3), over httpx.

It speaks Hermes' wire exactly: `POST /api/register` (name, version, type, endpoint, capabilities,
metadata) → component id + token; `POST /api/heartbeat` and `POST /api/unregister?component_id=` carry the
token in `X-Authentication-Token`; `POST /api/components/status` announces a shutdown; `GET /api/components`
(older Hermes: `POST /api/query`) lists what is registered, and `lookup` finds one entry by id
(`GET /api/components/{id}`, else the listing). Knows nothing of FastAPI, of Rhetor's gateway or of when
to call what (that is `registration.py`). Failures raise `HermesError` (a `RhetorError`), split into
"could not reach" and "answered with an error status".
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rhetor.errors import RhetorError

if TYPE_CHECKING:
    import httpx
else:  # httpx loads with the first client (rhetor.lazy): a start with Hermes off never imports it
    from rhetor.lazy import httpx

TOKEN_HEADER = "X-Authentication-Token"


class HermesError(RhetorError):
    """Hermes answered with an error status (`http_status`), or something we cannot use."""

    type = "hermes_error"

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class HermesUnreachableError(HermesError):
    """Hermes could not be reached (connection refused, DNS, timeout)."""

    type = "hermes_unreachable"


class HermesClient:
    def __init__(self, base_url: str, *, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s, trust_env=False)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, *, token: str | None = None, timeout_s: float | None = None,
                    **kwargs: Any) -> Any:
        headers = {TOKEN_HEADER: token} if token is not None else None
        extra: dict[str, Any] = {"timeout": timeout_s} if timeout_s is not None else {}
        try:
            r = await self._http.request(method, path, headers=headers, **kwargs, **extra)
        except httpx.TransportError as exc:
            raise HermesUnreachableError(f"Hermes at {self.base_url} unreachable: {type(exc).__name__}") from None
        if r.status_code >= 400:
            raise HermesError(f"Hermes {method} {path} answered {r.status_code}: {r.text[:200]}",
                              http_status=r.status_code)
        try:
            return r.json() if r.content else {}
        except ValueError:
            raise HermesError(f"Hermes {method} {path} answered non-JSON", http_status=r.status_code) from None

    async def register(self, payload: dict[str, Any]) -> tuple[str, str]:
        """Register; returns (component_id, token)."""
        data = await self._call("POST", "/api/register", json=payload)
        if not isinstance(data, dict) or data.get("success") is False:
            raise HermesError(f"Hermes refused the registration: {data!r}"[:300])
        cid = data.get("component_id") or data.get("componentId")
        token = data.get("token")
        if not cid or token is None:
            raise HermesError("Hermes registration reply lacks component_id or token")
        # The token is opaque (a JSON string in Hermes); send it back exactly as received.
        return str(cid), token if isinstance(token, str) else json.dumps(token)

    async def heartbeat(self, component_id: str, token: str, status: dict[str, Any]) -> None:
        await self._call("POST", "/api/heartbeat", token=token, json={"component_id": component_id, "status": status})

    async def unregister(self, component_id: str, token: str, *, timeout_s: float | None = None) -> None:
        await self._call("POST", "/api/unregister", token=token, params={"component_id": component_id},
                         timeout_s=timeout_s)

    async def report_status(self, component: str, port: int, status: str, *, timeout_s: float | None = None) -> None:
        await self._call("POST", "/api/components/status", timeout_s=timeout_s,
                         json={"component": component, "port": port, "status": status})

    async def components(self) -> list[dict[str, Any]]:
        """Registered components (TK's `GET /api/components`; older Hermes: `POST /api/query`)."""
        try:
            data = await self._call("GET", "/api/components")
        except HermesError as exc:
            if exc.http_status not in (404, 405):
                raise
            data = await self._call("POST", "/api/query", json={"healthy_only": False})
        items = data.get("components", data) if isinstance(data, dict) else data
        return [c for c in items if isinstance(c, dict)] if isinstance(items, list) else []

    async def lookup(self, component_id: str) -> dict[str, Any] | None:
        """The entry Hermes lists under `component_id`, or None when it lists none (e.g. after its restart).

        Hermes answers heartbeats from components it has forgotten with 200, so only this tells whether
        other components can still discover us."""
        try:
            data = await self._call("GET", f"/api/components/{component_id}")
        except HermesError as exc:
            if exc.http_status not in (404, 405):
                raise
            # 404: not listed — or a Hermes without this route; the listing tells which
        else:
            if isinstance(data, dict) and data.get("component_id", data.get("componentId")) == component_id:
                return data
        return next((c for c in await self.components()
                     if c.get("component_id", c.get("componentId")) == component_id), None)

    async def health(self) -> dict[str, Any]:
        data = await self._call("GET", "/api/health")
        return data if isinstance(data, dict) else {"status": data}


__all__ = ["TOKEN_HEADER", "HermesClient", "HermesError", "HermesUnreachableError"]
