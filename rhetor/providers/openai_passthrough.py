"""Same-vendor pass-through for the OpenAI provider: a request that arrived on Rhetor's OpenAI front goes to an
OpenAI(-compatible) upstream with the caller's body intact — only `model` rewritten, Rhetor's additions (component
or template system prompt, stored history, route defaults the caller left unset) spliced in — and the answer
comes back as received: the JSON body's bytes, or the SSE events of each network read as one `RawFrame`, while the
usual parser still reads text, tool calls, finish reason and usage for contexts and the ledger.

The fast path: the body is re-encoded once (the model changes), the answer is parsed once and relayed unchanged.
Knows the Chat Completions wire and `Passthrough`; nothing of routing, contexts or Rhetor's fronts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from rhetor.errors import ProviderError, UpstreamConnectError, UpstreamProtocolError
from rhetor.providers.http import HttpUpstream
from rhetor.providers.openai import max_tokens_key
from rhetor.providers.openai_reply import StreamState, parse_response
from rhetor.providers.openai_tools import message_dict
from rhetor.types import ChatRequest, ChatResponse, Passthrough, ProviderEvent, RawFrame, TextDelta

SYSTEM_ROLES = ("system", "developer")


def system_addition(system: str | None, caller: str | None) -> str | None:
    """What Rhetor put in front of the caller's own system text (the combination rule of rhetor.prompts:
    Rhetor's part first, then the caller's, joined by a blank line)."""
    if not system or system == caller:
        return None
    if caller and system.endswith(caller):
        return system[: -len(caller)].removesuffix("\n\n") or None
    return system


def spliced_messages(request: ChatRequest, pt: Passthrough, *, system_roles: tuple[str, ...],
                     build: Any) -> list[Any]:
    """The caller's own message dicts, in order, with Rhetor's additions (turns without a `raw_index`, built by
    `build`) where the gateway put them. The caller's system messages stay where they were."""
    raw: list[Any] = pt.body.get("messages") or []
    if len(request.messages) == len(raw):  # the caller's turns, each once and in order: nothing spliced in
        for i, m in enumerate(request.messages):  # (a loop, not two lists built and compared)
            if m.raw_index != i:
                break
        else:
            return list(raw)
    indices = [m.raw_index for m in request.messages]
    if raw and request.messages and all(i is None for i in indices):  # the single-message context form
        last = max((i for i, m in enumerate(raw) if isinstance(m, dict) and m.get("role") not in system_roles),
                   default=None)
        indices[-1] = last
    out: list[Any] = []
    done = -1
    for m, index in zip(request.messages, indices, strict=True):
        if index is None:
            if done < 0:  # Rhetor's history goes after the caller's leading system messages
                while done + 1 < len(raw) and _role(raw[done + 1]) in system_roles:
                    done += 1
                    out.append(raw[done])
            out.append(build(m))
            continue
        if index <= done:
            continue  # one caller message may become several normalized turns
        out.extend(raw[j] for j in range(done + 1, index) if _role(raw[j]) in system_roles)
        out.append(raw[index])
        done = index
    out.extend(raw[j] for j in range(done + 1, len(raw)) if _role(raw[j]) in system_roles)
    return out


def _role(message: Any) -> Any:
    return message.get("role") if isinstance(message, dict) else None


def payload(request: ChatRequest, pt: Passthrough, *, stream: bool) -> dict[str, Any]:
    body = dict(pt.body)
    body["model"] = request.model
    messages = spliced_messages(request, pt, system_roles=SYSTEM_ROLES, build=message_dict)
    addition = system_addition(request.system, pt.system)
    body["messages"] = [{"role": "system", "content": addition}, *messages] if addition else messages
    # route defaults (a task entry's temperature, ...) only where the caller said nothing
    if request.temperature is not None:
        body.setdefault("temperature", request.temperature)
    if request.top_p is not None:
        body.setdefault("top_p", request.top_p)
    if request.max_tokens is not None and "max_tokens" not in body and "max_completion_tokens" not in body:
        body[max_tokens_key(request.model)] = request.max_tokens
    if stream:
        body["stream"] = True
        options = body.get("stream_options")
        body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    else:
        body.pop("stream", None)
        body.pop("stream_options", None)
    return body


def wants_usage(pt: Passthrough) -> bool:
    options = pt.body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


async def complete(http: HttpUpstream, request: ChatRequest, pt: Passthrough) -> ChatResponse:
    raw = await http.request_bytes("POST", "/chat/completions", payload(request, pt, stream=False),
                                   model=request.model, timeout_s=request.timeout_s, extra_headers=pt.headers)
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError("openai answered with a body that is not JSON", provider="openai",
                                    model=request.model) from None
    try:
        response = parse_response(data, request.model)
    except ProviderError as exc:
        raise http.scrub(exc) from None
    response.raw = raw
    return response


async def stream(http: HttpUpstream, request: ChatRequest, pt: Passthrough) -> AsyncIterator[ProviderEvent]:
    """Per network read, the upstream's events as one RawFrame (the usage-only chunk Rhetor asked for on its own
    account is kept back), then the normalized events they carry (a run of text as one TextDelta); then the
    StreamEnd. Batching by read, not by event, is what makes relaying cheap: a zero-delay 8-event answer
    passed every layer above 16 times, now twice; the bytes relayed are the same."""
    state = StreamState(request.model)
    relay_usage = wants_usage(pt)
    batches = http.stream_batches("/chat/completions", payload(request, pt, stream=True), model=request.model,
                                  timeout_s=request.timeout_s, extra_headers=pt.headers)
    # The stream's first event goes out alone, before the rest of its network read is parsed: the caller's first
    # byte waited for the whole read (8 events of the benchmark's answer) otherwise. One more frame per stream
    # (+21k instructions in process) for a first byte ~0.06 ms sooner at c=1 (benchmarks/ratio.py, medians of 5
    # A/B runs).
    first = True
    loads, not_json = orjson.loads, orjson.JSONDecodeError
    try:
        async for lines in batches:
            frames: list[bytes] = []
            events: list[ProviderEvent] = []
            failure: ProviderError | None = None
            for line in lines:
                # a chunk is one `data:` line: its JSON read as received; anything else is [DONE] or not a chunk
                if line[:5] != b"data:" or state.done:  # (blank lines, every other one, end here too)
                    continue
                if first and (frames or events):
                    first = False
                    if frames:
                        yield RawFrame(b"\n\n".join(frames) + b"\n\n")
                    for event in events:
                        yield event
                    frames, events = [], []
                try:
                    try:
                        data: Any = loads(line[5:])
                    except not_json:
                        if line[5:].strip() == b"[DONE]":
                            state.done = True
                            frames.append(line)
                            continue
                        data = state.load(line[5:].decode("utf-8", "replace"))
                    delta = state.fold(data)
                except ProviderError as exc:
                    failure = exc  # the events before it still go out first, as they would one by one
                    break
                # kept back: the usage-only chunk (no choices, a usage object) Rhetor asked for on its own account
                if relay_usage or type(data) is not dict or data.get("choices") != [] \
                        or type(data.get("usage")) is not dict:
                    frames.append(line)
                if delta is not None:  # add_relayed inline: a run of text is one TextDelta
                    last = events[-1] if events else None
                    if type(last) is TextDelta:
                        last.text += delta.text
                    else:
                        events.append(delta)
                if state.pending:
                    events.extend(state.take())
            if frames:
                yield RawFrame(b"\n\n".join(frames) + b"\n\n")
            for event in events:
                yield event
            if failure is not None:
                raise failure
    except (UpstreamProtocolError, UpstreamConnectError):
        if not state.finished:
            raise
    except ProviderError as exc:
        raise http.scrub(exc) from None
    finally:
        await batches.aclose()
    yield state.end()


__all__ = ["complete", "payload", "spliced_messages", "stream", "system_addition", "wants_usage"]
