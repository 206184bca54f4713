"""The `rhetor.chat` span: one per chat request on any front (the parent of routing, template, context and
attempt spans), carrying who asked (`rhetor.front`, `rhetor.request_id`, `gen_ai.conversation.id`), what was
asked (`gen_ai.request.*`, the route) and what answered (`gen_ai.response.*`, `gen_ai.usage.*`, fallback and
attempts), plus the prompt and completion only when RHETOR_OTEL_CAPTURE_CONTENT=1.
Every function is a no-op when tracing is off (the span is None / no Tracing is active).
Knows the normalized types and the run info; nothing of HTTP or providers' wire formats.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from rhetor.observability import genai, tracing
from rhetor.types import ChatResponse, Message, StreamEnd

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from rhetor.routing.fallback import RunInfo
    from rhetor.routing.router import Route

_chat: ContextVar[Span | None] = ContextVar("rhetor_chat_span", default=None)


def start(front: str, request_id: str | None, context_id: str | None) -> Span | None:
    """The request's chat span (not yet current: the gateway makes it current around its work)."""
    if tracing.active() is None:
        return None
    attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", "rhetor.front": front}
    if request_id:
        attrs["rhetor.request_id"] = request_id
    if context_id:
        attrs["gen_ai.conversation.id"] = context_id
    return tracing.start("rhetor.chat", attrs)


@contextmanager
def using(span: Span | None) -> Iterator[None]:
    """Make the chat span current for the gateway's work (children nest under it; `routed`/`prepared` find it)."""
    if span is None:
        yield
        return
    token = _chat.set(span)
    try:
        with tracing.current(span):
            yield
    finally:
        _chat.reset(token)


def routed(route_span: Span | None, route: Route) -> None:
    """The route decided: on the routing span, and the request's model and knobs on the chat span."""
    if route_span is None:
        return
    first = route.targets[0] if route.targets else None
    attrs: dict[str, Any] = {"rhetor.component": route.component, "rhetor.task_type": route.task_type,
                             "rhetor.route.targets": [f"{t.provider}/{t.model}" for t in route.targets]}
    tracing.set_attributes(route_span, attrs)
    parent = _chat.get()
    if parent is not None:
        tracing.set_attributes(parent, {**attrs, **genai.request_attrs(route.options),
                                        "gen_ai.request.model": first.model if first else None})


def prepared(system: str | None, messages: Sequence[Message]) -> None:
    """The prompt as sent (stored history included), on the chat span — only with content capture on."""
    if tracing.capture_content():
        span = _chat.get()
        if span is not None:
            span.set_attributes(genai.input_content(system, messages))


def answered(span: Span | None, response: ChatResponse, info: RunInfo) -> None:
    if span is None:
        return
    _run(span, info)
    span.set_attributes(genai.response_attrs(response, response.provider))
    if tracing.capture_content():
        span.set_attributes(genai.output_content(response.content, response.finish_reason))


def streamed(span: Span | None, end: StreamEnd | None, text: str, status: str, info: RunInfo) -> None:
    """The stream is over (complete, error or cancelled): the answer's attributes, then the span ends."""
    if span is None:
        return
    _run(span, info)
    span.set_attribute("rhetor.stream.status", status)
    target = info.target
    if end is not None:
        span.set_attributes(genai.response_attrs(end, target.provider if target else None,
                                                 target.model if target else None))
    if tracing.capture_content():
        span.set_attributes(genai.output_content(text, end.finish_reason if end is not None else status))
    if status == "error":
        span.set_attribute("error.type", "stream_error")
        from opentelemetry.trace import StatusCode

        span.set_status(StatusCode.ERROR)
    span.end()


def _run(span: Span, info: RunInfo) -> None:
    span.set_attributes({"rhetor.fallback": info.fallback, "rhetor.attempts": len(info.attempts)})


__all__ = ["answered", "prepared", "routed", "start", "streamed", "using"]
