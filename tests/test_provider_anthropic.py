"""The Anthropic provider: pure wire translation without a network, then the provider and the official SDK
against the fake Anthropic server on 127.0.0.1 (real HTTP, real SSE)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import anthropic
import orjson
import pytest

from rhetor.errors import (
    InvalidRequestError,
    ProviderUnavailableError,
    RhetorError,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from rhetor.providers import load
from rhetor.providers.anthropic import DEFAULT_MAX_TOKENS, LEADING_USER_PLACEHOLDER, AnthropicProvider, build_payload
from rhetor.providers.anthropic_reply import SSEParser, StreamState, parse_response, sse_events
from rhetor.providers.base import Provider
from rhetor.settings import Settings
from rhetor.types import ChatRequest, Message, ProviderEvent, StreamEnd, TextDelta
from tests.fakes.anthropic import FakeAnthropic, running_fake_anthropic
from tests.fakes.server import free_port

KEY = "test-key"


def req(text: str = "Hi there", model: str = "claude-3-haiku-20240307", **kw: object) -> ChatRequest:
    return ChatRequest(model=model, messages=[Message("user", text)], **kw)  # type: ignore[arg-type]


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with running_fake_anthropic() as f:
        yield f


def provider_for(fake: FakeAnthropic, key: str = KEY) -> AnthropicProvider:
    return AnthropicProvider(Settings(anthropic_api_key=key, anthropic_base_url=fake.base_url))


async def collect(p: AnthropicProvider, request: ChatRequest) -> list[ProviderEvent]:
    return [ev async for ev in p.stream(request)]


# ------------------------------------------------------------------ pure translation


def test_payload_maps_fields_and_defaults() -> None:
    r = ChatRequest(model="claude-x-unknown", messages=[Message("user", "a")], system="be brief",
                    temperature=0.2, top_p=0.9, stop=["END"], extra={"top_k": 5, "foo": 1})
    p = build_payload(r)
    assert p == {"model": "claude-x-unknown", "max_tokens": DEFAULT_MAX_TOKENS, "system": "be brief",
                 "messages": [{"role": "user", "content": "a"}], "temperature": 0.2, "top_p": 0.9,
                 "stop_sequences": ["END"], "top_k": 5}
    assert build_payload(req(max_tokens=7), stream=True)["max_tokens"] == 7
    assert build_payload(req(), stream=True)["stream"] is True


def test_payload_merges_roles_lifts_system_and_starts_with_user() -> None:
    r = ChatRequest(model="m", system="top", messages=[
        Message("assistant", "earlier"), Message("system", "inline"), Message("user", "u1"),
        Message("user", "u2"), Message("assistant", ""), Message("assistant", "a1")])
    p = build_payload(r)
    assert p["system"] == "top\n\ninline"
    assert p["messages"] == [{"role": "user", "content": LEADING_USER_PLACEHOLDER},
                             {"role": "assistant", "content": "earlier"},
                             {"role": "user", "content": "u1\n\nu2"},
                             {"role": "assistant", "content": "a1"}]
    with pytest.raises(InvalidRequestError):
        build_payload(ChatRequest(model="m", messages=[Message("system", "only system")]))


def test_parse_response_maps_text_usage_and_stop_reasons() -> None:
    body = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-haiku-20240307",
            "content": [{"type": "text", "text": "Hel"}, {"type": "tool_use", "id": "t"},
                        {"type": "text", "text": "lo"}],
            "stop_reason": "max_tokens", "usage": {"input_tokens": 12, "output_tokens": 3}}
    r = parse_response(body)
    assert (r.content, r.model, r.provider) == ("Hello", "claude-3-haiku-20240307", "anthropic")
    assert r.finish_reason == "length"
    assert (r.usage.input_tokens, r.usage.output_tokens) == (12, 3)
    cases = [("end_turn", "stop"), ("stop_sequence", "stop"), ("tool_use", "tool_calls"), (None, "stop")]
    for wire, ours in cases:
        assert parse_response({**body, "stop_reason": wire}).finish_reason == ours
    with pytest.raises(UpstreamProtocolError):
        parse_response({"type": "message"})


REAL_STREAM = """event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],\
"model":"claude-3-5-sonnet-20241022","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,\
"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

: a comment line
event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},\
"usage":{"output_tokens":15}}

event: message_stop
data: {"type":"message_stop"}

"""


def fold(text: str, model: str = "m") -> list[ProviderEvent]:
    parser, state, out = SSEParser(), StreamState(model), []
    for line in text.splitlines():
        sse = parser.feed(line)
        if sse is not None and (ev := state.handle(*sse)) is not None:
            out.append(ev)
    return out


def test_sse_parser_and_state_fold_the_real_sequence() -> None:
    events = fold(REAL_STREAM)
    assert events[:2] == [TextDelta("Hello"), TextDelta("!")]
    end = events[2]
    assert isinstance(end, StreamEnd) and len(events) == 3
    assert (end.finish_reason, end.usage.input_tokens, end.usage.output_tokens, end.model) == (
        "stop", 25, 15, "claude-3-5-sonnet-20241022")
    parser = SSEParser()
    assert [parser.feed(x) for x in ["event: e", "data: a", "data: b", ""]][-1] == ("e", "a\nb")


def test_sse_events_read_the_usual_two_line_form_as_bytes_and_any_other_as_text() -> None:
    pending: list[bytes] = []
    out = sse_events([b"event: ping", b'data: {"type": "ping"}', b"", b": comment", b"event: e", b"data: a",
                      b"data: b", b"", b"event: x"], pending)
    assert out == [(b'event: ping\ndata: {"type": "ping"}', ("ping", b'{"type": "ping"}')),
                   (b": comment\nevent: e\ndata: a\ndata: b", ("e", "a\nb"))]
    assert pending == [b"event: x"]
    state = StreamState("m")  # a bad UTF-8 byte inside a string reads as U+FFFD, as the decoded text did
    delta = state.handle("content_block_delta",
                         b'{"type": "content_block_delta", "delta": {"type": "text_delta", "text": "a\xffb"}}')
    assert delta == TextDelta("a\ufffdb")


def test_error_event_maps_type_to_status() -> None:
    overloaded = ('event: error\n'
                  'data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n')
    with pytest.raises(UpstreamStatusError) as ei:
        fold(overloaded)
    assert (ei.value.upstream_status, ei.value.upstream_type, ei.value.retryable) == (529, "overloaded_error",
                                                                                        True)
    cases = [("rate_limit_error", 429, True), ("api_error", 500, True), ("invalid_request_error", 400, False),
             ("authentication_error", 401, False), ("permission_error", 403, False),
             ("not_found_error", 404, False), ("request_too_large", 413, False)]
    for etype, status, retryable in cases:
        with pytest.raises(UpstreamStatusError) as ei:
            fold(overloaded.replace("overloaded_error", etype))
        assert (ei.value.upstream_status, ei.value.retryable) == (status, retryable)
    with pytest.raises(UpstreamProtocolError):
        fold("event: message_start\ndata: {not json\n\n")


async def test_static_facts_and_registry() -> None:
    p = load("claude", Settings(anthropic_api_key=KEY))
    assert isinstance(p, AnthropicProvider) and isinstance(p, Provider)
    assert p.name == "anthropic" and p.default_model == "claude-sonnet-5-5"  # current, from the catalogue
    models = await p.models()
    assert {"claude-sonnet-5-5", "claude-haiku-4-5", "claude-sonnet-4-5"} <= set(models)
    assert not {"claude-3-haiku-20240307", "claude-3-sonnet-20240229", "claude-3-haiku"} & set(models)  # retired
    assert p.context_window("claude-some-future-model") == 200_000
    assert (await p.available()).ok
    keyless = AnthropicProvider(Settings())
    assert await keyless.available() == type(await p.available())(False, "ANTHROPIC_API_KEY not set")
    with pytest.raises(ProviderUnavailableError):
        await keyless.complete(req())
    with pytest.raises(ProviderUnavailableError):
        await collect(keyless, req())
    await p.aclose()


# ------------------------------------------------------------------ against the fake server


async def test_complete(fake: FakeAnthropic) -> None:
    p = provider_for(fake)
    r = await p.complete(req(system="sys", temperature=0.5, stop=["zzz"]))
    assert (r.content, r.finish_reason, r.provider, r.model) == (
        "Hello from fake Anthropic", "stop", "anthropic", "claude-3-haiku-20240307")
    assert (r.usage.input_tokens, r.usage.output_tokens) == (3, 4)
    sent, headers = fake.requests[0], fake.request_headers[0]
    assert (sent["system"], sent["stop_sequences"]) == ("sys", ["zzz"])
    assert sent["max_tokens"] == DEFAULT_MAX_TOKENS
    assert headers["x-api-key"] == KEY and headers["anthropic-version"] == "2023-06-01"
    r2 = await p.complete(req(max_tokens=2, model="claude-brand-new"))  # unknown models pass through
    assert (r2.content, r2.finish_reason, r2.model) == ("Hello from", "length", "claude-brand-new")
    await p.aclose()


async def test_stream(fake: FakeAnthropic) -> None:
    p = provider_for(fake)
    events = await collect(p, req())
    *deltas, end = events
    assert all(isinstance(d, TextDelta) for d in deltas) and len(deltas) == 4
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == "Hello from fake Anthropic"
    assert isinstance(end, StreamEnd)
    assert (end.finish_reason, end.usage.input_tokens, end.usage.output_tokens) == ("stop", 2, 4)
    assert fake.requests[0]["stream"] is True
    events = await collect(p, req(max_tokens=3))
    assert isinstance(events[-1], StreamEnd) and events[-1].finish_reason == "length" and len(events) == 4
    await p.aclose()


async def test_status_errors(fake: FakeAnthropic) -> None:
    p = provider_for(fake)
    fake.fail_next(429, retry_after=1.5)
    with pytest.raises(UpstreamStatusError) as ei:
        await p.complete(req())
    e = ei.value
    assert (e.upstream_status, e.retryable, e.retry_after) == (429, True, 1.5)
    assert e.upstream_type == "rate_limit_error"
    fake.fail_next(529)
    with pytest.raises(UpstreamStatusError) as ei:
        await collect(p, req())
    e = ei.value
    assert (e.upstream_status, e.retryable, e.upstream_type) == (529, True, "overloaded_error")
    for status in (400, 401):
        fake.fail_next(status)
        with pytest.raises(UpstreamStatusError) as ei:
            await p.complete(req())
        assert ei.value.upstream_status == status and not ei.value.retryable
    assert (await p.complete(req())).content  # script consumed: the next request succeeds
    await p.aclose()


async def test_wrong_key_is_401_and_never_leaks(fake: FakeAnthropic) -> None:
    secret = "sk-ant-very-secret-123"
    p = provider_for(fake, key=secret)
    errors: list[RhetorError] = []
    for call in (lambda: p.complete(req()), lambda: collect(p, req())):
        with pytest.raises(UpstreamStatusError) as ei:
            await call()
        assert ei.value.upstream_status == 401 and ei.value.upstream_type == "authentication_error"
        errors.append(ei.value)
    await p.aclose()
    refused = AnthropicProvider(Settings(anthropic_api_key=secret, anthropic_base_url=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(UpstreamConnectError) as ci:
        await refused.complete(req())
    errors.append(ci.value)
    for err in errors:
        assert secret not in str(err) and secret not in repr(err)
        assert secret not in orjson.dumps(err.to_dict()).decode()


async def test_mid_stream_overload_raises_after_deltas(fake: FakeAnthropic) -> None:
    p = provider_for(fake)
    fake.error_event_next(after_chunks=2)
    got: list[ProviderEvent] = []
    with pytest.raises(UpstreamStatusError) as ei:
        async for ev in p.stream(req()):
            got.append(ev)
    assert got == [TextDelta("Hello"), TextDelta(" from")]
    e = ei.value
    assert (e.upstream_status, e.upstream_type, e.retryable) == (529, "overloaded_error", True)
    await p.aclose()


async def test_cut_stream_and_cut_body_are_protocol_errors(fake: FakeAnthropic) -> None:
    p = provider_for(fake)
    fake.cut_next(after_chunks=1)
    got: list[ProviderEvent] = []
    with pytest.raises(UpstreamProtocolError) as ei:
        async for ev in p.stream(req()):
            got.append(ev)
    assert got == [TextDelta("Hello")] and ei.value.retryable
    fake.cut_next(after_chunks=0)
    with pytest.raises(UpstreamProtocolError):
        await p.complete(req())
    await p.aclose()


async def test_connection_refused() -> None:
    p = AnthropicProvider(Settings(anthropic_api_key=KEY, anthropic_base_url=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(UpstreamConnectError) as ei:
        await collect(p, req())
    assert ei.value.retryable and not isinstance(ei.value, UpstreamTimeoutError)
    await p.aclose()


async def test_read_timeout(fake: FakeAnthropic) -> None:
    p = provider_for(fake)
    fake.delay_next(2.0, n=2)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        await p.complete(req(timeout_s=0.2))
    with pytest.raises(UpstreamTimeoutError):
        await collect(p, req(timeout_s=0.2))
    assert time.monotonic() - started < 1.5
    await p.aclose()


async def test_early_stop_closes_the_upstream_stream(fake: FakeAnthropic) -> None:
    fake.reply_text = " ".join(f"word{i}" for i in range(60))
    fake.chunk_delay = 0.02
    p = provider_for(fake)
    gen = p.stream(req())
    first = await gen.__anext__()
    assert first == TextDelta("word0")
    await gen.aclose()  # type: ignore[attr-defined]
    assert await asyncio.to_thread(fake.disconnected.wait, 3.0)  # the fake saw the connection go
    assert fake.disconnects == 1 and fake.completed == 0
    fake.reply_text, fake.chunk_delay = "still works", 0.0  # the pool is healthy afterwards
    assert (await p.complete(req())).content == "still works"
    await p.aclose()


# ------------------------------------------------------------------ fidelity: the official SDK on the fake


def test_official_sdk_talks_to_the_fake(fake: FakeAnthropic) -> None:
    client = anthropic.Anthropic(base_url=fake.base_url, api_key=KEY, max_retries=0)
    msg = client.messages.create(model="claude-3-haiku-20240307", max_tokens=100,
                                 messages=[{"role": "user", "content": "Hi"}])
    assert msg.content[0].type == "text" and msg.content[0].text == "Hello from fake Anthropic"
    assert msg.stop_reason == "end_turn" and msg.usage.output_tokens == 4 and msg.id.startswith("msg_")
    with client.messages.stream(model="claude-3-haiku-20240307", max_tokens=2,
                                messages=[{"role": "user", "content": "Hi"}]) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert texts == ["Hello", " from"]
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 2
    fake.fail_next(529)
    with pytest.raises(anthropic.InternalServerError) as ei:
        client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    assert isinstance(ei.value, anthropic.APIStatusError) and ei.value.status_code == 529
    fake.error_event_next(after_chunks=1)
    with pytest.raises(anthropic.APIStatusError), client.messages.stream(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "Hi"}]) as stream:
        stream.get_final_message()
    bad = anthropic.Anthropic(base_url=fake.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    client.close()
    bad.close()
