"""The OpenTelemetry SDK side of tracing: imported only when tracing is on (rhetor.observability.tracing says
when). Builds one TracerProvider per app — never the process-global one, so several apps (tests) keep their
spans apart and FastAPI's own instrumentation (disabled by the app factory) never sees Rhetor's provider — with
a batching OTLP/HTTP exporter when an endpoint is configured.

The standard variables apply: the OTLP exporter reads OTEL_EXPORTER_OTLP_{,TRACES_}HEADERS, _TIMEOUT,
_COMPRESSION and _CERTIFICATE; the provider reads OTEL_TRACES_SAMPLER(_ARG), OTEL_SPAN_*_LIMIT; the batch
processor reads OTEL_BSP_*; the resource reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; the propagators
are OTEL_PROPAGATORS (W3C tracecontext + baggage by default). Export runs on the batch processor's thread,
never on the event loop. Knows nothing of Rhetor's routes, providers or types.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from rhetor import __version__

log = logging.getLogger("rhetor.tracing")

_KINDS = {"internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT, "server": SpanKind.SERVER}


class Tracing:
    """One app's tracer. `endpoint` = the OTLP/HTTP traces URL (…/v1/traces), or None for no exporter (a test
    then adds one with `add_exporter`)."""

    def __init__(self, *, endpoint: str | None, capture_content: bool = False, exporter: str = "otlp") -> None:
        attrs: dict[str, Any] = {"service.version": __version__}
        if not os.environ.get("OTEL_SERVICE_NAME"):  # the resource detector's value wins when set
            attrs["service.name"] = "rhetor"
        self.provider = TracerProvider(resource=Resource.create(attrs), shutdown_on_exit=False)
        self.tracer = self.provider.get_tracer("rhetor", __version__)
        self.capture_content = capture_content
        self.endpoint = endpoint
        if exporter == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            self.provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif exporter == "otlp":  # no endpoint (RHETOR_OTEL=1 alone): the OTLP default, http://localhost:4318
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        log.info("tracing on: spans %s", f"exported over OTLP/HTTP to {endpoint or 'http://localhost:4318/v1/traces'}"
                 if exporter == "otlp" else "printed to stdout" if exporter == "console" else "not exported")

    def add_exporter(self, exporter: SpanExporter) -> None:
        """Export every span synchronously to `exporter` as it ends (tests: the SDK's InMemorySpanExporter)."""
        self.provider.add_span_processor(SimpleSpanProcessor(exporter))

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, Any] | None, kind: str) -> Iterator[Span]:
        with self.tracer.start_as_current_span(name, kind=_KINDS[kind], attributes=attributes,
                                               record_exception=False, set_status_on_exception=False) as s:
            try:
                yield s
            except BaseException as exc:
                mark_error(s, exc)
                raise

    def start(self, name: str, attributes: Mapping[str, Any] | None, kind: str, parent: Span | None) -> Span:
        ctx = trace.set_span_in_context(parent) if parent is not None else None
        return self.tracer.start_span(name, context=ctx, kind=_KINDS[kind], attributes=attributes)

    def server_span(self, name: str, carrier: Mapping[str, str], attributes: Mapping[str, Any]) -> Span:
        """The front's SERVER span, child of the caller's `traceparent` when it sent one (else a new trace)."""
        parent = propagate.extract(carrier)
        return self.tracer.start_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes)

    def inject(self, headers: MutableMapping[str, str], span: Span) -> None:
        propagate.inject(headers, context=trace.set_span_in_context(span, otel_context.Context()))

    def shutdown(self) -> None:
        """Flush what is batched (bounded by the exporter's timeout) and stop. Blocking: call off the loop."""
        try:
            self.provider.shutdown()
        except Exception as exc:  # a collector that is gone must not turn a clean shutdown into a traceback
            log.warning("tracing: could not flush spans at shutdown: %s", exc)


def mark_error(span: Span, exc: BaseException) -> None:
    span.set_attribute("error.type", str(getattr(exc, "type", None) or type(exc).__qualname__))
    span.set_status(Status(StatusCode.ERROR, str(exc)[:200] or type(exc).__qualname__))


def end_span(span: Span, error: BaseException | None) -> None:
    if error is not None:
        mark_error(span, error)
    span.end()


__all__ = ["Tracing", "end_span", "mark_error"]
