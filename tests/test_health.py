"""Health, readiness, metrics and the shutdown endpoint, through real HTTP against a real Rhetor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from rhetor.settings import Settings


def test_health_is_the_tekton_standard_body(simulated_rhetor: str) -> None:
    for path in ("/health", "/api/health", "/api/v1/health"):
        r = httpx.get(simulated_rhetor + path)
        assert r.status_code == 200
        h = r.json()
        assert {"status", "component", "version", "timestamp", "uptime", "port", "registeredWithHermes",
                "dependencies", "metrics", "details", "providers"} <= set(h)
        assert h["status"] == "healthy" and h["component"] == "rhetor" and h["registeredWithHermes"] is False
        assert h["providers"] == {"anthropic": False, "openai": False, "gemini": False, "ollama": False,
                                  "simulated": True}
        assert {d["name"]: d["status"] for d in h["dependencies"]} == {"hermes": "disabled", "engram": "disabled"}
        assert h["metrics"]["rss_bytes"] > 0 and h["metrics"]["threads"] >= 1
        assert h["details"]["ready"] is True and h["details"]["draining"] is False


def test_metrics_count_requests_errors_and_provider_latency(simulated_rhetor: str) -> None:
    with httpx.Client(base_url=simulated_rhetor) as c:
        before = c.get("/api/v1/metrics").json()
        assert c.post("/api/v1/chat", json={"message": "hi", "provider_id": "simulated"}).status_code == 200
        # simulated-fail-500 fails, then the route falls back to the default simulated model: one fallback
        r = c.post("/api/v1/chat", json={"message": "x", "provider_id": "simulated", "model_id": "simulated-fail-500",
                                         "options": {"fallback_provider": "simulated",
                                                     "fallback_model": "simulated-fast"}})
        assert r.status_code == 200 and r.json()["fallback"] is True
        after = c.get("/api/metrics").json()
    assert after["requests_total"] >= before["requests_total"] + 3
    assert after["requests_in_flight"] == 1  # this very request
    assert after["fallbacks_total"] == before["fallbacks_total"] + 1
    sim = after["providers"]["simulated"]
    assert sim["calls"] >= 3 and sim["errors"] >= 1 and sim["avg_ms"] >= 0


def test_ready_and_shutdown_without_a_server_handle(simulated_rhetor: str) -> None:
    """Served in a thread (no RhetorServer): /shutdown is accepted and drains, but cannot end the process."""
    with httpx.Client(base_url=simulated_rhetor) as c:
        assert c.get("/ready").json() == {"status": "ready", "ready": True}
        r = c.post("/shutdown")
        assert r.status_code == 202 and r.json()["status"] == "accepted"
        ready = c.get("/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        assert c.get("/health").json()["details"]["draining"] is True


def test_shutdown_token_is_required_when_set(make_settings: Callable[..., Settings], rhetor: Any) -> None:
    with rhetor(make_settings(shutdown_token="s3cret")) as url, httpx.Client(base_url=url) as c:
        assert c.post("/api/shutdown").status_code == 401
        assert c.post("/api/shutdown", headers={"X-Shutdown-Token": "wrong"}).status_code == 401
        assert c.get("/ready").status_code == 200
        assert c.post("/api/shutdown", headers={"Authorization": "Bearer s3cret"}).status_code == 202
        assert c.get("/ready").status_code == 503
