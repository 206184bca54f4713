"""OpenAPI declarations of the operational routes: health and readiness (Tekton's launchers and monitors), the
Tekton JSON metrics view, Prometheus `/metrics`, graceful shutdown, and this document with its `/docs` page.
Declarations only; the handlers are rhetor.api.health, rhetor.api.prometheus and FastAPI's docs routes.
"""

from __future__ import annotations

from typing import Any

from rhetor.api.openapi.common import NATIVE, Op, Open, Param, Resp, errors, resp, text

TAG = "health"
HTML = "text/html"


class Dependency(Open):
    name: str
    required: bool
    status: str
    url: str | None = None


class Health(Open):
    """Tekton's standard health body (camelCase), plus `providers {id: available}` (contracts §5)."""

    status: str
    component: str
    version: str
    timestamp: str
    uptime: float | None = None
    port: int
    registeredWithHermes: bool
    dependencies: list[Dependency]
    metrics: dict[str, Any]
    details: dict[str, Any]
    providers: dict[str, bool]


class Ready(Open):
    status: str
    ready: bool


class JsonMetrics(Open):
    """The Tekton JSON view of the process counters."""

    component: str
    uptime: float
    timestamp: str


class Accepted(Open):
    status: str
    message: str
    timestamp: str


_READY: dict[int | str, Resp] = {200: resp("Ready", Ready), 503: resp("Starting or draining", Ready)}
_EXPOSITION = ("The Prometheus text exposition format (OpenMetrics when Accept asks for "
               "application/openmetrics-text)")
_SHUTDOWN: dict[int | str, Resp] = {202: resp("Accepted: Rhetor drains and exits", Accepted),
             401: resp("RHETOR_SHUTDOWN_TOKEN is set and was not given", *NATIVE),
             403: resp("Not from loopback, through an untrusted proxy, or exposed without keys", *NATIVE),
             413: resp("Request body too large", *NATIVE)}

OPS = [
    *(Op("GET", path, "Health (Tekton standard body); exempt from keys", TAG, {200: resp("Healthy", Health)},
         security=False) for path in ("/health", "/api/health", "/api/v1/health")),
    *(Op("GET", path, "Readiness: 503 until ready and while draining", TAG, _READY, security=False)
      for path in ("/ready", "/api/ready")),
    *(Op("GET", path, "Process counters (Tekton JSON view)", "metrics",
         {200: resp("Counters", JsonMetrics), **errors(NATIVE)}) for path in ("/api/metrics", "/api/v1/metrics")),
    Op("GET", "/metrics", "Prometheus metrics (RHETOR_METRICS_TOKEN may open it to a scraper)", "metrics",
       {200: text(_EXPOSITION, "text/plain"), 404: text("Metrics are off (RHETOR_METRICS=0)", "text/plain"),
        **errors(NATIVE)},
       params=(Param("Accept", "header", "application/openmetrics-text for OpenMetrics"),)),
    *(Op("POST", path, "Graceful shutdown (loopback callers, or RHETOR_SHUTDOWN_TOKEN)", TAG, _SHUTDOWN,
         params=(Param("X-Shutdown-Token", "header", "RHETOR_SHUTDOWN_TOKEN, when set"),))
      for path in ("/shutdown", "/api/shutdown")),
    Op("GET", "/openapi.json", "This document", "docs",
       {200: text("The OpenAPI document", "application/json", {"type": "object"}), **errors(NATIVE)}),
    Op("GET", "/docs", "The API reference page (Swagger UI)", "docs", {200: text("HTML", HTML), **errors(NATIVE)}),
    Op("GET", "/docs/oauth2-redirect", "Swagger UI's OAuth2 redirect page", "docs",
       {200: text("HTML", HTML), **errors(NATIVE)}),
]

__all__ = ["OPS"]
