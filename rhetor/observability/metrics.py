"""Prometheus metrics (prometheus_client): what a request cost and how long it took, by front, provider, model,
component and outcome; upstream attempts, fallbacks, retries, breaker states, and the backlogs of the process.

Names follow the OpenTelemetry GenAI semantic conventions where they exist (`gen_ai_client_token_usage`,
`gen_ai_server_request_duration_seconds`, `gen_ai_server_time_to_first_token_seconds`,
`gen_ai_client_operation_duration_seconds`), the rest are `rhetor_*`. Every label value is bounded
(rhetor.observability.labels). Updates are a few dictionary lookups and lock-free increments on cached
children (rhetor.observability.series; prometheus_client renders them at scrape time), done once per request
from its usage record (`record`), once per upstream attempt (`attempt`) and by the HTTP middleware; gauges of
state owned elsewhere (breakers, backlogs, open streams) are sampled at scrape time, and every few seconds in
multi-process mode.

Multi-process: when PROMETHEUS_MULTIPROC_DIR is set (before prometheus_client is imported, as its docs
require), values live in per-process files, the exposition aggregates every worker's
(`MultiProcessCollector`), gauges say how they combine (`livesum`, `max`) and `close()` marks the process dead.
Knows usage records, run attempts and the label bounds; nothing of HTTP frameworks or the ledger's storage.
"""

from __future__ import annotations

import os
import re
from typing import Any

from rhetor import __version__
from rhetor.governance.ledger import UsageRecord
from rhetor.observability.labels import NONE, OTHER, LabelBounds, front
from rhetor.observability.series import Families, GaugeMode, family
from rhetor.routing.fallback import Attempt
from rhetor.routing.router import Target

# seconds; fine below a millisecond (Rhetor's own overhead), then the OTel GenAI duration buckets
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025,
                    0.05, 0.1, 0.25, 1.0)
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12,
                    10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
BREAKER = {"closed": 0, "half_open": 1, "open": 2}
_STATUS_OK = re.compile(r"[a-z_]{1,40}\Z")
GENAI = ("gen_ai_operation_name", "gen_ai_system", "gen_ai_response_model", "front")


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


class PromMetrics:
    def __init__(self, *, key_label: bool = False) -> None:
        self.multiprocess = multiprocess_dir() is not None
        # In-process: a registry per app (tests build many). Multi-process: values go to files, the registry is
        # built per scrape around a MultiProcessCollector.
        reg = None if self.multiprocess else Families()  # prometheus_client's registry at the first scrape
        self.families = reg
        self.key_label = key_label
        self.bounds = LabelBounds()
        keyed = ("key",) if key_label else ()

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Any:
            return family(reg, name, doc, "counter", labels)

        def histogram(name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> Any:
            return family(reg, name, doc, "histogram", labels, buckets=buckets)

        def gauge(name: str, doc: str, mode: GaugeMode, labels: tuple[str, ...] = ()) -> Any:
            return family(reg, name, doc, "gauge", labels, multiprocess_mode=mode)

        self.requests = counter("rhetor_requests", "Model requests by front, provider and model that answered, "
                                "component and outcome (ok, cancelled or an error type)",
                                ("front", "provider", "model", "component", "status", *keyed))
        self.duration = histogram("gen_ai_server_request_duration_seconds", "Time from request to the last byte "
                                  "of the answer", GENAI, DURATION_BUCKETS)
        self.ttft = histogram("gen_ai_server_time_to_first_token_seconds", "Time to the first streamed token",
                              GENAI, TTFT_BUCKETS)
        self.overhead = histogram("rhetor_overhead_seconds", "Time spent in Rhetor itself (wall time minus upstream "
                                  "wait) until the response head, as in x-rhetor-overhead-ms", ("front",),
                                  OVERHEAD_BUCKETS)
        self.upstream = histogram("gen_ai_client_operation_duration_seconds", "One upstream attempt, from call to "
                                  "answer or stream commit", ("gen_ai_operation_name", "gen_ai_system",
                                                              "gen_ai_request_model", "outcome"), DURATION_BUCKETS)
        self.token_usage = histogram("gen_ai_client_token_usage", "Tokens per request (input or output)",
                                     ("gen_ai_operation_name", "gen_ai_system", "gen_ai_response_model",
                                      "gen_ai_token_type"), TOKEN_BUCKETS)
        self.tokens = counter("rhetor_tokens", "Tokens by direction: input, output, cached (input read from a "
                              "cache), cache_write, reasoning", ("provider", "model", "component", "direction",
                                                                 *keyed))
        self.cost = counter("rhetor_cost_usd", "Cost in US dollars at the price table's list prices",
                            ("provider", "model", "component", *keyed))
        self.fallbacks = counter("rhetor_fallbacks", "Switches to a later target of a route", ("provider", "model"))
        self.retries = counter("rhetor_retries", "Attempts that retried the same target", ("provider", "model"))
        self.http = counter("rhetor_http_requests", "HTTP requests by route template, method and status code",
                            ("route", "method", "code"))
        self.in_flight = gauge("rhetor_requests_in_flight", "HTTP requests being served", "livesum")
        self.websockets = gauge("rhetor_websockets_open", "Open WebSocket connections", "livesum")
        self.streams = gauge("rhetor_streams_open", "Open answer streams (SSE and WebSocket)", "livesum")
        self.breaker = gauge("rhetor_breaker_state", "Circuit breaker per target: 0 closed, 1 half-open, 2 open",
                             "max", ("provider", "model"))
        self.ledger_queue = gauge("rhetor_usage_ledger_queue", "Usage records waiting to be written", "livesum")
        self.mirror_backlog = gauge("rhetor_context_mirror_backlog", "Contexts waiting to be mirrored to Engram",
                                    "livesum")
        self.embedder_backlog = gauge("rhetor_embedder_backlog", "Stored messages not embedded yet", "max")
        gauge("rhetor_build_info", "Rhetor's version", "max", ("version",)).labels(__version__).set(1)
        self._children: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._attempts: dict[tuple[str, str, str], Any] = {}
        self._http: dict[tuple[str, str, int], Any] = {}
        self._overhead: dict[str, Any] = {}
        self._statuses: set[str] = set()
        self._breakers: set[tuple[str, str]] = set()

    # -- per request ---------------------------------------------------------------------------------------
    def record(self, rec: UsageRecord) -> None:
        """One finished request (its usage record): counts, durations, tokens and cost."""
        b = self.bounds
        provider, model = b.provider(rec.provider), b.model(rec.provider, rec.model)
        status = rec.status if rec.status in self._statuses else self._status(rec.status)
        key = (rec.front, provider, model, b.component(rec.component), status,
               rec.key_id if self.key_label else None)  # every part bounded, so this memo is too
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = self._make(key)
        requests, duration, ttft, tok_in, tok_out, t_in, t_out, t_cached, t_write, t_reason, cost = children
        requests.inc()
        duration.observe(rec.latency_ms / 1000)
        if rec.ttft_ms is not None:
            ttft.observe(rec.ttft_ms / 1000)
        if rec.input_tokens or rec.output_tokens:
            tok_in.observe(rec.input_tokens)
            tok_out.observe(rec.output_tokens)
            t_in.inc(rec.input_tokens)
            t_out.inc(rec.output_tokens)
        if rec.cached_tokens:
            t_cached.inc(rec.cached_tokens)
        if rec.cache_write_tokens:
            t_write.inc(rec.cache_write_tokens)
        if rec.reasoning_tokens:
            t_reason.inc(rec.reasoning_tokens)
        if rec.cost_usd:
            cost.inc(rec.cost_usd)
        if len(rec.attempts) > 1:
            self._count_retries(rec.attempts)

    def _status(self, status: str) -> str:
        if len(self._statuses) >= 64 or not _STATUS_OK.match(status):
            return OTHER
        self._statuses.add(status)
        return status

    def _make(self, key: tuple[Any, ...]) -> tuple[Any, ...]:
        front_name, provider, model, c, status, key_id = key
        f = front(front_name)
        keyed = (key_id or "anonymous",) if self.key_label else ()
        op = "embeddings" if f == "embeddings" else "chat"
        genai = (op, provider, model, f)
        tokens = [self.tokens.labels(provider, model, c, d, *keyed)
                  for d in ("input", "output", "cached", "cache_write", "reasoning")]
        return (self.requests.labels(f, provider, model, c, status, *keyed), self.duration.labels(*genai),
                self.ttft.labels(*genai), self.token_usage.labels(op, provider, model, "input"),
                self.token_usage.labels(op, provider, model, "output"), *tokens,
                self.cost.labels(provider, model, c, *keyed))

    def _count_retries(self, attempts: list[dict[str, Any]]) -> None:
        previous = None
        for a in attempts:
            target = (a.get("provider"), a.get("model"))
            if target == previous and a.get("outcome") != "skipped":
                self.retries.labels(self.bounds.provider(target[0]), self.bounds.model(*target)).inc()
            previous = target

    def refused(self, front_name: str, status: str) -> None:
        """A model request refused before routing (no usage record): counted under its front."""
        self.requests.labels(front(front_name), NONE, NONE, NONE, status,
                             *(("anonymous",) if self.key_label else ())).inc()

    def http_done(self, route: str, method: str, code: int, front_name: str | None, overhead_ms: float | None) -> None:
        key = (route, method, code)
        child = self._http.get(key)
        if child is None:
            child = self._http[key] = self.http.labels(route, method, str(code))
        child.inc()
        if front_name is not None and overhead_ms is not None:
            hist = self._overhead.get(front_name)
            if hist is None:
                hist = self._overhead[front_name] = self.overhead.labels(front(front_name))
            hist.observe(overhead_ms / 1000)

    # -- RunObserver (fallback runner) -----------------------------------------------------------------
    def attempt(self, attempt: Attempt) -> None:
        if attempt.outcome == "skipped":
            return
        key = (attempt.provider, attempt.model, attempt.outcome)
        child = self._attempts.get(key)
        if child is None:
            b = self.bounds
            child = self._attempts[key] = self.upstream.labels("chat", b.provider(attempt.provider),
                                                               b.model(attempt.provider, attempt.model),
                                                               attempt.outcome)
        child.observe(attempt.elapsed_ms / 1000)

    def fell_back(self, target: Target) -> None:
        self.fallbacks.labels(self.bounds.provider(target.provider), self.bounds.model(target.provider,
                                                                                        target.model)).inc()

    # -- sampled state ---------------------------------------------------------------------------------
    def sample_breakers(self, snapshot: dict[str, dict[str, Any]]) -> None:
        seen: set[tuple[str, str]] = set()
        for name, state in snapshot.items():
            provider, _, model = name.partition("/")
            labels = (self.bounds.provider(provider), self.bounds.model(provider, model))
            seen.add(labels)
            self.breaker.labels(*labels).set(BREAKER.get(str(state.get("state")), 0))
        for labels in self._breakers - seen:
            self.breaker.labels(*labels).set(0)
        self._breakers |= seen

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The body and content type for a scrape: OpenMetrics when the Accept header asks for it."""
        from prometheus_client import CollectorRegistry, multiprocess
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept or "")
        if self.families is not None:
            registry = self.families.registry()
        else:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return encoder(registry), content_type

    def close(self) -> None:
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


__all__ = ["BREAKER", "PromMetrics", "multiprocess_dir"]
