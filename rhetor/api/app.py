"""App factory and lifespan: builds the Gateway from Settings and a validated TaskConfig, mounts the routes,
installs the middleware and error handlers. The config is loaded *before* the app exists, so a bad config
refuses to start with the same message `check-config` prints. No network happens here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from rhetor import __version__
from rhetor.api import fastlane, health
from rhetor.api.anthropic import messages as anthropic_messages
from rhetor.api.auth import ApiKeyMiddleware
from rhetor.api.budgets import routes as budget_routes
from rhetor.api.keys import routes as key_routes
from rhetor.api.legacy import http as legacy_http
from rhetor.api.legacy.envelope import Envelope
from rhetor.api.middleware import GatewayMiddleware
from rhetor.api.native import memory, templates
from rhetor.api.native import routes as native_routes
from rhetor.api.native.ws import socket_router
from rhetor.api.openai import chat as openai_chat
from rhetor.api.openai import responses as openai_responses
from rhetor.api.openapi import install as install_openapi
from rhetor.api.prometheus import MetricsTokenMiddleware, start_sampler
from rhetor.api.prometheus import routes as prometheus_routes
from rhetor.api.responses import rhetor_error_handler, unexpected_error_handler, validation_error_handler
from rhetor.api.unknown_routes import http_error_handler
from rhetor.api.usage import routes as usage_routes
from rhetor.catalog import load_catalog
from rhetor.context import ContextStore, SqliteContextStore
from rhetor.context.embedder import make_embedder
from rhetor.context.responses import SqliteResponseIndex
from rhetor.context.retrieval import Memory
from rhetor.errors import RhetorError
from rhetor.gateway import Gateway
from rhetor.governance.service import Governance
from rhetor.observability import tracing as otel_tracing
from rhetor.prompts import TemplateStore
from rhetor.prompts.pool import RenderPool
from rhetor.providers import Providers
from rhetor.routing.config import TaskConfig, load_config
from rhetor.routing.deployment_check import check_deployments
from rhetor.routing.lifecycle import check_routes
from rhetor.routing.models import validate_aliases
from rhetor.settings import Settings
from rhetor.storage.backends import Backends
from rhetor.storage.redis_bus import LocalBus
from rhetor.ui.routes import routes as ui_routes

log = logging.getLogger("rhetor")


class RhetorApp(FastAPI):
    """FastAPI with the fast lane (rhetor.api.fastlane) in front of its per-request stack."""

    fast_lane = True

    def build_middleware_stack(self) -> ASGIApp:
        slow = super().build_middleware_stack()
        return fastlane.build(self, slow, self.user_middleware) if self.fast_lane else slow

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A request with FastAPI's own telemetry off by configuration (create_app's) goes straight to the stack:
        # what FastAPI.__call__ then Starlette.__call__ do for it, without their second coroutine and the
        # telemetry's per-request `enabled()` (benchmarks/README.md "Round 8, before the upstream call").
        config = self._telemetry
        if scope["type"] == "lifespan" or config["tracing"] or config["metrics"] or config["logs"]:
            await super().__call__(scope, receive, send)
            return
        if self.root_path:
            scope["root_path"] = self.root_path
        scope["app"] = self
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        await self.middleware_stack(scope, receive, send)


def create_app(settings: Settings, config: TaskConfig | None = None) -> FastAPI:
    providers = Providers(settings)  # a bad RHETOR_PROVIDERS refuses to start, naming the key path (no I/O)
    task_config = config if config is not None else load_config(settings.task_config, providers.deployment_kinds())
    validate_aliases(settings.model_aliases)  # a bad RHETOR_MODEL_ALIASES refuses to start, naming the alias
    for line in check_routes(task_config, load_catalog(settings.catalog_file)):  # a retired model refuses to start
        log.warning("%s", line)
    check_deployments(task_config, providers.deployments, load_catalog(settings.catalog_file))
    backends = Backends(settings)  # PostgreSQL / Redis when their URLs are set (rhetor.storage); else nothing
    governance = Governance(settings, backends)  # loads the price table: a bad RHETOR_PRICES refuses to start
    tracing = otel_tracing.build(settings)  # None unless an OTLP endpoint or RHETOR_OTEL=1: then the SDK loads

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime: health.Runtime = app.state.runtime
        await backends.open()  # the PostgreSQL pool when configured: down, it refuses to start naming the URL
        app.state.legacy_defaults = legacy_http.LegacyDefaults(  # POST /provider's default: shared on PostgreSQL
            settings.data_dir / "legacy_provider.json", backends.settings_store())
        base: ContextStore = backends.contexts() or SqliteContextStore(settings.db_path)  # PostgreSQL when set
        sqlite_store = base if isinstance(base, SqliteContextStore) else None
        store = runtime.wrap_store(base)  # Engram mirror when ENGRAM_URL is set
        await store.open()
        prompt_store = TemplateStore(settings.data_dir / "templates.db",  # built-ins + user templates, in memory
                                     rows=backends.templates(),  # user versions on PostgreSQL when set
                                     pool=RenderPool(workers=settings.template_workers,
                                                     timeout_s=settings.template_timeout_s,
                                                     memory_mb=settings.template_memory_mb))
        await prompt_store.open()
        responses = backends.responses() or SqliteResponseIndex(settings.data_dir / "responses.db")
        app.state.responses = responses  # the Responses API's ids (on PostgreSQL when set)
        await responses.open()
        gateway = Gateway(settings, task_config, providers, store, templates=prompt_store)
        app.state.gateway = gateway
        # Semantic memory: nothing loads here; the indexer embeds stored messages in the background.
        # On PostgreSQL the vectors and lexical search live next to the shared messages (rhetor.storage.pg_vectors).
        memory_store = backends.memory() if sqlite_store is None else sqlite_store
        if memory_store is not None:
            gateway.memory = Memory(memory_store, make_embedder(settings, gateway.providers),
                                    interval_s=settings.index_interval_s, k_turns=settings.retrieval_k,
                                    cache_bytes=settings.vector_cache_mb * 2**20)
            gateway.memory.start()
        await governance.start(gateway)  # the usage ledger: every request metered, written off the hot path
        await governance.govern(gateway)  # budgets and the response cache: admission in the gateway seam
        if (redis := backends.shared()) is not None:  # breakers mirrored, change notices for keys/templates/budgets
            await redis.attach(gateway, governance.access, governance.spending, prompt_store)
        runtime.obs.attach(gateway, governance.prices)  # metrics and access log fed from the same records
        app.state.ready = True
        await runtime.start(gateway)  # metrics hook, Hermes registration in the background, ready
        sampler = start_sampler(app)  # multi-process metrics only: sampled gauges refreshed every few seconds
        if settings.anthropic_api_key is None and settings.openai_api_key is None:
            # No probe here: start-up makes no network call, not even to a local Ollama.
            log.warning("no ANTHROPIC_API_KEY or OPENAI_API_KEY: answering from Ollama if it is running at %s, "
                        "else from the simulated provider (every such reply says simulated: true)",
                        settings.ollama_host)
        try:
            yield
        finally:
            app.state.ready = False
            if sampler is not None:
                sampler.cancel()
            await runtime.stop()  # not ready, Hermes told shutting_down, then unregistered
            if gateway.memory is not None:
                await gateway.memory.stop()
            await gateway.aclose()
            await governance.close()  # after the drain: the last usage records are written
            await store.close()
            await prompt_store.close()
            await backends.close()  # after every store that shares its pool
            if tracing is not None:
                await asyncio.to_thread(tracing.shutdown)  # the last batched spans, exported off the loop
            await responses.close()

    # FastAPI's own OpenTelemetry (server spans, metrics, logs) is off: Rhetor's tracing middleware makes the one
    # SERVER span, and FastAPI's per-request "is a provider configured?" check costs ~7% of a request.
    app = RhetorApp(title="Rhetor", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None,
                    telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False})
    app.fast_lane = settings.fast_lane
    app.state.tracing = tracing
    app.state.runtime = health.Runtime(settings)
    app.state.governance = governance
    app.state.backends = backends
    app.state.bus = redis.bus if (redis := backends.shared()) is not None else LocalBus()  # publish("config") etc.
    app.add_exception_handler(RhetorError, rhetor_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)  # unknown /v1/* routes: the SDKs' shape
    # Route tables, one per web module (each a list of Starlette routes). Add a module here with one line.
    app.router.routes.extend(budget_routes)
    for table in (native_routes.routes, health.routes, legacy_http.routes, templates.routes, memory.routes,
                  openai_chat.routes, anthropic_messages.routes, usage_routes, ui_routes, openai_responses.routes):
        app.router.routes.extend(table)
    app.router.routes.extend(key_routes)  # /api/v1/keys: the caller-key admin API (RHETOR_ADMIN_KEY)
    from rhetor.api.admin import install as install_admin  # (after app.state.bus: it subscribes to "config")

    install_admin(app)  # POST /api/v1/admin/reload: re-read the config files live (rhetor.config.reload)
    app.router.routes.extend(prometheus_routes)  # GET /metrics (the Tekton JSON view is /api/v1/metrics)
    app.include_router(socket_router(side=Envelope))  # one socket: the flat protocol and the adapter's envelope
    install_openapi(app)  # /openapi.json and /docs describe every HTTP route (rhetor.api.openapi)
    # Always installed (keys can be created while serving); with no key configured it only checks one flag.
    app.add_middleware(ApiKeyMiddleware, access=governance.access)
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"])
    if settings.metrics_token is not None:  # outside the key check: the token alone opens GET /metrics
        app.add_middleware(MetricsTokenMiddleware, token=settings.metrics_token.get_secret_value(),
                           keys_required=lambda: keys_required(governance, settings))
    app.add_middleware(GatewayMiddleware, max_body_bytes=settings.max_body_bytes, obs=app.state.runtime.obs)
    if tracing is not None:  # outermost: the SERVER span covers everything, 413s and auth refusals included
        from rhetor.observability.tracing_asgi import TracingMiddleware

        app.add_middleware(TracingMiddleware, tracing=tracing)
    return app


def keys_required(governance: Governance, settings: Settings) -> bool:
    """Whether callers need a key now (static keys, or virtual keys created while serving)."""
    ring = getattr(getattr(governance, "access", None), "ring", None)
    return bool(getattr(ring, "required", settings.api_keys))


__all__ = ["create_app"]
