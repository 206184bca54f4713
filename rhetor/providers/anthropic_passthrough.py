"""Same-vendor pass-through for the Anthropic provider: a request that arrived on Rhetor's Anthropic front goes to
Anthropic with the caller's body intact (thinking, cache_control, image/document blocks, service_tier, anything
newer) — only `model` rewritten, Rhetor's additions (a component or template system prompt, stored history)
spliced in, and the caller's `anthropic-beta` / `anthropic-version` headers forwarded. The answer comes back as
received (the JSON body's bytes, or the SSE events of each network read as one `RawFrame`) while the usual parser
still reads text, tool calls, stop reason and usage (cache reads and writes included) for contexts and the ledger.

Knows the Messages wire and `Passthrough`; nothing of routing, contexts or Rhetor's fronts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from rhetor.errors import ProviderError, UpstreamConnectError, UpstreamProtocolError, UpstreamStatusError
from rhetor.providers.anthropic_reply import StreamState, parse_response, sse_events
from rhetor.providers.base import add_relayed
from rhetor.providers.http import HttpUpstream
from rhetor.providers.openai_passthrough import spliced_messages, system_addition
from rhetor.types import ChatRequest, ChatResponse, Message, Passthrough, ProviderEvent, RawFrame, StreamEnd


def _plain(m: Message) -> dict[str, Any]:
    """A stored turn of Rhetor's (text only) as a Messages API message."""
    return {"role": "assistant" if m.role == "assistant" else "user", "content": m.content or "…"}


def payload(request: ChatRequest, pt: Passthrough, *, stream: bool) -> dict[str, Any]:
    body = dict(pt.body)
    body["model"] = request.model
    body["messages"] = spliced_messages(request, pt, system_roles=(), build=_plain)
    addition = system_addition(request.system, pt.system)
    if addition:
        caller = body.get("system")
        blocks = caller if isinstance(caller, list) else ([{"type": "text", "text": caller}] if caller else [])
        body["system"] = [{"type": "text", "text": addition}, *blocks]
    if request.temperature is not None:
        body.setdefault("temperature", request.temperature)
    if request.top_p is not None:
        body.setdefault("top_p", request.top_p)
    if stream:
        body["stream"] = True
    else:
        body.pop("stream", None)
    return body


async def complete(http: HttpUpstream, request: ChatRequest, pt: Passthrough) -> ChatResponse:
    raw = await http.request_bytes("POST", "/v1/messages", payload(request, pt, stream=False), model=request.model,
                                   timeout_s=request.timeout_s, extra_headers=pt.headers)
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError("anthropic answered with a body that is not JSON", provider="anthropic",
                                    model=request.model) from None
    response = parse_response(data, request.model)
    response.raw = raw
    return response


async def stream(http: HttpUpstream, request: ChatRequest, pt: Passthrough) -> AsyncIterator[ProviderEvent]:
    """Per network read, the upstream's SSE events (their lines as received) as one RawFrame, then the normalized
    events they carry (a run of text as one TextDelta); then the StreamEnd (rhetor.providers.openai_passthrough
    says why by read)."""
    state = StreamState(request.model)
    pending: list[bytes] = []  # the lines of an event not yet complete
    end: StreamEnd | None = None
    batches = http.stream_batches("/v1/messages", payload(request, pt, stream=True), model=request.model,
                                  timeout_s=request.timeout_s, extra_headers=pt.headers)
    # The stream's first event goes out alone (rhetor.providers.openai_passthrough says why), before the rest of
    # its read is even split into events: until a frame went out, a read is cut after its first blank line.
    first = True
    try:
        async for lines in batches:
            if end is not None:
                continue
            parts: tuple[list[bytes], ...] = (lines,)
            if first and b"" in lines:
                cut = lines.index(b"") + 1
                parts = (lines[:cut], lines[cut:])
            for part in parts:
                frames: list[bytes] = []
                events: list[ProviderEvent] = []
                failure: ProviderError | None = None
                for text, sse in sse_events(part, pending):
                    if end is not None:
                        break
                    frames.append(text + b"\n\n")
                    try:
                        event = state.handle(*sse)
                    except ProviderError as exc:
                        failure = exc  # its own frame and the events before it still go out first
                        break
                    if isinstance(event, StreamEnd):
                        end = event
                    elif event is not None:
                        add_relayed(events, event)
                if frames:
                    first = False
                    yield RawFrame(b"".join(frames))
                for event in events:
                    yield event
                if failure is not None:
                    raise failure
    except (UpstreamProtocolError, UpstreamConnectError):
        if end is None:
            raise
    except UpstreamStatusError as exc:
        raise http.scrub(exc) from None
    finally:
        await batches.aclose()
    if end is None:
        raise UpstreamProtocolError("anthropic stream ended without message_stop", provider="anthropic",
                                    model=request.model)
    yield end


__all__ = ["complete", "payload", "stream"]
