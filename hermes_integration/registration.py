"""Rhetor's registration lifecycle with Hermes: register in the background, heartbeat, re-register when
Hermes forgets us, unregister on shutdown.

Rules: never fatal and never in the way of serving — `start()` returns at once and the loop retries with
capped exponential backoff (quietly: one warning, then debug lines); a heartbeat answered 401/404 means
Hermes restarted or expired our token, so we register again; `stop()` unregisters with the token.
Every registration carries a stable `component_id` (the configured one, default `rhetor`, then whatever
Hermes answered), so registering again updates our entry instead of adding one per token lifetime.
Hermes answers 200 to heartbeats from components it has forgotten, so the listing is checked right after
registering and every `check_s`: when our entry is missing we register again, and `registered` reports
what Hermes last listed, not what we once did.
The endpoint is asked of a callable because the real port is known only once the server has bound it.
Knows nothing of FastAPI or of the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Callable
from typing import Any

from hermes_integration.client import HermesClient, HermesError

log = logging.getLogger("rhetor.hermes")

NAME = "rhetor"
# What Rhetor offers other components (the original R1 names plus the June ones that apply); the manifest
# lists the same (tests/test_manifest.py checks they agree).
CAPABILITIES = ["llm_management", "llm_orchestration", "model_selection", "context_management",
                "prompt_engineering", "ai_messaging"]


def endpoint_url(host: str, port: int) -> str:
    if host in ("0.0.0.0", "::", ""):
        host = "localhost"  # a wildcard bind is reachable as localhost, which is how Tekton addresses peers
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def registration_payload(endpoint: str, version: str, port: int) -> dict[str, Any]:
    ws = endpoint.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    return {
        "name": NAME,
        "version": version,
        "type": NAME,
        "endpoint": endpoint,
        "capabilities": list(CAPABILITIES),
        "metadata": {
            "description": "LLM gateway of the Tekton platform",
            "port": port,
            "pid": os.getpid(),
            "replaces": "llm_adapter",
            "endpoints": {"http": f"{endpoint}/api/v1", "ws": f"{ws}/ws", "health": f"{endpoint}/health",
                          "ready": f"{endpoint}/ready"},
        },
    }


class Registration:
    """One component's registration; `registered`, `component_id` and `last_error` feed the health body."""

    def __init__(self, client: HermesClient, payload: Callable[[], dict[str, Any] | None], *,
                 heartbeat_s: float = 30.0, retry_max_s: float = 60.0, check_s: float = 60.0,
                 component_id: str = NAME, status: Callable[[], dict[str, Any]] | None = None) -> None:
        self.client = client
        self._payload = payload
        self._status = status or (lambda: {"status": "healthy"})
        self.heartbeat_s = heartbeat_s
        self.retry_max_s = retry_max_s
        self.check_s = check_s
        self.component_id: str | None = None
        self._stable_id = component_id
        self.token: str | None = None
        self.listed: bool | None = None  # what Hermes' listing said last; None = not checked since registering
        self.last_error: str | None = None
        self.registrations = 0
        self.checks = 0
        self._next_check = 0.0
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    @property
    def registered(self) -> bool:
        """Registered as far as Hermes' own listing says (a token alone proves nothing after its restart)."""
        return self.token is not None and self.listed is not False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="hermes-registration")

    def describe(self) -> dict[str, Any]:
        return {"url": self.client.base_url, "registered": self.registered, "component_id": self.component_id,
                "listed": self.listed, "registrations": self.registrations, "checks": self.checks,
                "last_error": self.last_error}

    async def register_once(self) -> bool:
        payload = self._payload()
        if payload is None:
            return False
        payload = {**payload, "component_id": self.component_id or self._stable_id}
        self.component_id, self.token = await self.client.register(payload)
        self.registrations += 1
        self.listed = None
        self._next_check = 0.0  # confirm with the listing at once
        self.last_error = None
        self._warned = False
        log.info("registered with Hermes at %s as %s (%s)", self.client.base_url, self.component_id,
                 payload["endpoint"])
        return True

    def _note(self, exc: HermesError) -> None:
        self.last_error = exc.message
        if not self._warned:
            log.warning("Hermes: %s (Rhetor carries on; retrying in the background)", exc.message)
            self._warned = True
        else:
            log.debug("Hermes: %s", exc.message)

    async def check(self) -> bool:
        """Ask Hermes' listing whether it still lists us; when it does not, drop the token (register again)."""
        cid = self.component_id
        if cid is None or self.token is None:
            return False
        now = asyncio.get_running_loop().time()
        self._next_check = now + self.check_s
        self.checks += 1
        try:
            self.listed = await self.client.lookup(cid) is not None
        except HermesError as exc:
            self._note(exc)
            self.listed = False  # Hermes cannot tell anyone where we are; ask again at the next heartbeat
            self._next_check = now + min(self.check_s, self.heartbeat_s)
            return False
        if not self.listed:
            log.warning("Hermes at %s no longer lists %s; registering again", self.client.base_url, cid)
            self.token = None
        return self.listed

    async def _run(self) -> None:
        delay = initial = min(1.0, self.retry_max_s)
        while True:
            if self.token is None:
                try:
                    if not await self.register_once():
                        await asyncio.sleep(0.05)  # the server has not bound its port yet
                        continue
                    delay = initial
                except HermesError as exc:
                    self._note(exc)
                    await asyncio.sleep(delay * (0.5 + random.random() / 2))
                    delay = min(delay * 2, self.retry_max_s)
                    continue
            if asyncio.get_running_loop().time() >= self._next_check:
                await self.check()
                if self.token is None:
                    continue  # forgotten: register again now
            await asyncio.sleep(self.heartbeat_s)
            cid, token = self.component_id, self.token
            if cid is None or token is None:
                continue
            try:
                await self.client.heartbeat(cid, token, self._status())
            except HermesError as exc:
                self._note(exc)
                if exc.http_status in (401, 404):  # Hermes restarted or our token expired: register again
                    self.token = None  # (with the same component_id, so the entry is updated, not duplicated)

    async def announce(self, status: str, port: int) -> None:
        """Best effort `POST /api/components/status` (e.g. shutting_down); never raises."""
        try:
            await self.client.report_status(NAME, port, status, timeout_s=1.0)
        except HermesError as exc:
            log.debug("Hermes status %s not delivered: %s", status, exc.message)

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the loop and unregister (with the token); never raises."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        cid, token = self.component_id, self.token
        if cid is not None and token is not None:
            try:
                await self.client.unregister(cid, token, timeout_s=timeout_s)
                log.info("unregistered from Hermes (%s)", cid)
            except HermesError as exc:
                log.warning("Hermes unregister failed: %s", exc.message)
        self.token, self.listed = None, None

    async def aclose(self) -> None:
        await self.stop()
        await self.client.aclose()


__all__ = ["CAPABILITIES", "NAME", "Registration", "endpoint_url", "registration_payload"]
