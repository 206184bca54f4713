"""OpenTelemetry traces, as the rest of Rhetor sees them: a handful of functions that open spans, and do
nothing at all when tracing is off.

Tracing is on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set or `RHETOR_OTEL=1`; then
the app builds one `rhetor.observability.otel.Tracing` (which imports the SDK) and the tracing middleware
(rhetor.observability.tracing_asgi) puts it in `_active` for each request. Everything here looks at that
ContextVar first: with tracing off it is None, every `span()` is a shared null context and no module of
OpenTelemetry is imported by this one, so the cost is one ContextVar read per call site.

Spans (names follow the OpenTelemetry GenAI conventions where they exist): the front's SERVER span, `rhetor.chat`
(one per chat, with the request's and the answer's gen_ai.* attributes), `rhetor.route`, `rhetor.template.render`,
`rhetor.context.load`, `rhetor.retrieval`, `chat {model}` (CLIENT, one per attempt), the upstream HTTP call
(CLIENT, whose context is injected as `traceparent`), `rhetor.context.store`.
Knows nothing of HTTP frameworks, providers or routing: callers hand it names and attribute values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from rhetor.observability.otel import Tracing
    from rhetor.settings import Settings

AttrValue = str | bool | int | float | Sequence[str] | Sequence[int] | Sequence[float]
Kind = Literal["internal", "client", "server"]

# The app's Tracing while a request is served with tracing on; None otherwise (and always when off).
_active: ContextVar[Tracing | None] = ContextVar("rhetor_tracing", default=None)
_NULL: AbstractContextManager[None] = nullcontext()

# Rhetor's provider names as `gen_ai.system` / `gen_ai.provider.name` values (the conventions' well-known ones).
GENAI_SYSTEM = {"anthropic": "anthropic", "openai": "openai", "ollama": "ollama", "simulated": "rhetor.simulated"}


# The Tracing of the request being served, or None when tracing is off: the ContextVar's own (C) `get`, no
# Python frame; the gateway reads it once per request to skip every span call when off (benchmarks/instructions.py).
active: Callable[[], Tracing | None] = _active.get


def span(name: str, attributes: Mapping[str, AttrValue] | None = None, *,
         kind: Kind = "internal") -> AbstractContextManager[Span | None]:
    """A child span of the current one, current for the `with` block (which receives it, or None when off).
    An exception leaving the block marks the span as an error (`error.type` = the error's type) and is re-raised.
    Use only where the block does not suspend a generator across yields (see `start`)."""
    tracing = _active.get()
    if tracing is None:
        return _NULL
    return tracing.span(name, attributes, kind)


def start(name: str, attributes: Mapping[str, AttrValue] | None = None, *, kind: Kind = "internal",
          parent: Span | None = None) -> Span | None:
    """A span that is *not* made current: for work that outlives the caller's block (a stream). End it with
    `end()`. `parent` defaults to the current span."""
    tracing = _active.get()
    if tracing is None:
        return None
    return tracing.start(name, attributes, kind, parent)


def end(span: Span | None, error: BaseException | None = None) -> None:
    """End a span from `start()`, as an error when `error` is given. No-op on None."""
    if span is not None:
        from rhetor.observability.otel import end_span  # only reached when tracing is on

        end_span(span, error)


@contextmanager
def current(span: Span | None) -> Iterator[None]:
    """Make `span` the current one for the block (its children nest under it), without ending it."""
    if span is None:
        yield
        return
    from opentelemetry import trace  # only reached when tracing is on

    with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
        yield


def inject(headers: MutableMapping[str, str], span: Span | None) -> None:
    """Write `span`'s context (W3C `traceparent`, `tracestate`, and baggage) into outgoing headers."""
    tracing = _active.get()
    if tracing is not None and span is not None:
        tracing.inject(headers, span)


def capture_content() -> bool:
    """Whether prompts and completions may be put on spans (RHETOR_OTEL_CAPTURE_CONTENT=1)."""
    tracing = _active.get()
    return tracing is not None and tracing.capture_content


def event(name: str, attributes: Mapping[str, AttrValue]) -> None:
    """An event on the current span (a skipped target, a fallback)."""
    if _active.get() is not None:
        from opentelemetry import trace  # only reached when tracing is on

        trace.get_current_span().add_event(name, attributes)


def set_attributes(span: Span | None, attributes: Mapping[str, Any]) -> None:
    """Set the attributes whose value is not None."""
    if span is not None:
        span.set_attributes({k: v for k, v in attributes.items() if v is not None})




def build(settings: Settings) -> Tracing | None:
    """The app's Tracing, or None (tracing off: nothing of the SDK is imported). On when `settings.otel` says so,
    or, left unset, when an OTLP endpoint is configured."""
    on = settings.otel if settings.otel is not None else settings.otel_endpoint is not None
    if not on:
        return None
    endpoint = settings.otel_endpoint
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        from rhetor.errors import ConfigError

        raise ConfigError(f"OTEL_EXPORTER_OTLP_ENDPOINT: {endpoint!r} is not an http:// or https:// URL "
                          "(Rhetor exports OTLP over HTTP, e.g. http://127.0.0.1:4318)")
    try:
        from rhetor.observability.otel import Tracing
    except ImportError as exc:
        from rhetor.errors import ConfigError

        raise ConfigError(f"tracing is configured (OTEL_EXPORTER_OTLP_ENDPOINT or RHETOR_OTEL=1) but the "
                          f"OpenTelemetry SDK is missing ({exc.name}): pip install 'rhetor[otel]'") from None
    return Tracing(endpoint=settings.otel_endpoint, capture_content=settings.otel_capture_content,
                   exporter=settings.otel_exporter)


__all__ = ["GENAI_SYSTEM", "AttrValue", "Kind", "active", "build", "capture_content", "current", "end", "event",
           "inject", "set_attributes", "span", "start"]
