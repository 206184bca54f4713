"""The OpenAI provider: pure translation tests, then the provider against the wire-faithful fake OpenAI server
(and the official `openai` SDK against the same fake, to prove the fake speaks the real protocol)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any, cast

import openai
import pytest

from rhetor.errors import (
    ProviderError,
    ProviderUnavailableError,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from rhetor.providers import load
from rhetor.providers.base import Provider
from rhetor.providers.openai import OpenAIProvider, build_payload
from rhetor.providers.openai_reply import StreamState, error_event, finish_reason, parse_chunk, parse_response, sse_data
from rhetor.settings import Settings
from rhetor.types import ChatRequest, Message, ProviderEvent, StreamEnd, TextDelta
from tests.fakes.openai import FakeOpenAI, running_fake_openai
from tests.fakes.server import free_port

KEY = "test-key"


def req(text: str = "hi there", **kw: Any) -> ChatRequest:
    return ChatRequest(model=kw.pop("model", "gpt-4o"), messages=[Message("user", text)], **kw)


async def collect(gen: AsyncIterator[ProviderEvent]) -> list[ProviderEvent]:
    return [event async for event in gen]


def text_of(events: list[ProviderEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


# ---------------------------------------------------------------- pure translation


def test_payload_minimal_has_no_unset_knobs() -> None:
    assert build_payload(req()) == {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi there"}]}


def test_payload_system_first_and_knobs_passed() -> None:
    request = ChatRequest(model="gpt-4o", messages=[Message("user", "a"), Message("assistant", "b")],
                          system="be brief", temperature=0.2, top_p=0.9, max_tokens=50, stop=["\n"])
    payload = build_payload(request, stream=True)
    assert payload["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "a"},
                                   {"role": "assistant", "content": "b"}]
    assert (payload["temperature"], payload["top_p"], payload["max_tokens"], payload["stop"]) == (
        0.2, 0.9, 50, ["\n"])
    assert payload["stream"] is True and payload["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("model", ["o3-mini", "o1", "gpt-5", "gpt-5-mini"])
def test_reasoning_models_get_max_completion_tokens(model: str) -> None:
    payload = build_payload(req(model=model, max_tokens=10))
    assert payload["max_completion_tokens"] == 10 and "max_tokens" not in payload


def test_parse_response_reads_text_usage_and_model() -> None:
    data = {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}
    r = parse_response(data, "gpt-4o")
    assert (r.content, r.model, r.provider, r.finish_reason) == ("Hi", "gpt-4o-2024-08-06", "openai", "length")
    assert (r.usage.input_tokens, r.usage.output_tokens) == (7, 3)


def test_parse_response_tool_call_only_has_empty_content() -> None:
    data = {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]},
                         "finish_reason": "tool_calls"}]}
    r = parse_response(data, "gpt-4o")
    assert (r.content, r.finish_reason, r.model, r.usage.total_tokens) == ("", "tool_calls", "gpt-4o", 0)


def test_parse_response_rejects_bodies_without_choices() -> None:
    with pytest.raises(UpstreamProtocolError):
        parse_response({"object": "chat.completion", "choices": []}, "m")
    with pytest.raises(UpstreamProtocolError):
        parse_response(["not", "an", "object"], "m")
    with pytest.raises(UpstreamStatusError) as info:
        parse_response({"error": {"message": "boom", "type": "server_error"}}, "m")
    assert info.value.upstream_status == 500 and info.value.retryable


@pytest.mark.parametrize(("wire", "normalized"), [
    ("stop", "stop"), ("length", "length"), ("tool_calls", "tool_calls"), ("function_call", "tool_calls"),
    ("content_filter", "content_filter"), ("eos", "stop"), (None, "stop"),
])
def test_finish_reason_mapping(wire: Any, normalized: str) -> None:
    assert finish_reason(wire) == normalized


def test_sse_data_lines() -> None:
    assert sse_data('data: {"a":1}') == '{"a":1}'
    assert sse_data("data:[DONE]") == "[DONE]"
    assert sse_data(": keep-alive") is None
    assert sse_data("") is None
    assert sse_data("event: message") is None


def test_parse_chunk_shapes() -> None:
    role = parse_chunk({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}], "model": "m1"})
    assert (role.text, role.finish_reason, role.model) == ("", None, "m1")
    content = parse_chunk({"choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]})
    assert content.text == "Hel"
    fin = parse_chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}], "usage": None})
    assert fin.finish_reason == "length" and fin.usage is None
    usage = parse_chunk({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}})
    assert usage.usage is not None and (usage.usage.input_tokens, usage.usage.output_tokens) == (5, 2)
    with pytest.raises(UpstreamProtocolError):
        parse_chunk("nope")


@pytest.mark.parametrize(("err", "status", "retryable"), [
    ({"message": "x", "type": "server_error", "param": None, "code": None}, 500, True),
    ({"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}, 429, True),
    ({"message": "bad", "type": "BadRequestError", "code": 400}, 400, False),  # vLLM's shape
    ({"message": "bad", "type": "invalid_request_error", "code": None}, 400, False),
    ("a bare string", 500, True),
])
def test_error_event_status(err: Any, status: int, retryable: bool) -> None:
    exc = error_event(err, "m")
    assert (exc.upstream_status, exc.retryable, exc.provider) == (status, retryable, "openai")
    with pytest.raises(UpstreamStatusError):
        parse_chunk({"error": err})


def test_stream_state_terminators() -> None:
    state = StreamState("gpt-4o")
    assert state.feed('data: {"choices":[{"index":0,"delta":{"content":"A"}}]}') == TextDelta("A")
    with pytest.raises(UpstreamProtocolError):
        state.end()  # neither [DONE] nor finish_reason yet
    state.feed('data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}')
    assert state.end().finish_reason == "stop"  # compatible servers may stop here without [DONE]
    state.feed('data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":1}}')
    state.feed("data: [DONE]")
    assert state.feed('data: {"choices":[{"index":0,"delta":{"content":"late"}}]}') is None
    end = state.end()
    assert (end.usage.input_tokens, end.usage.output_tokens, end.model) == (4, 1, "gpt-4o")
    with pytest.raises(UpstreamProtocolError):
        StreamState("m").feed("data: {not json")


async def test_context_windows_and_models_come_from_the_catalogue() -> None:
    p = OpenAIProvider(Settings(openai_api_key="k"))
    assert p.context_window("gpt-4o-mini") == 128_000
    assert p.context_window("gpt-4.1-mini") == 1_047_576
    assert p.context_window("gpt-5.4") == 1_050_000
    assert p.context_window("some-local-model") == 128_000  # unlisted: the provider's default window
    models = await p.models()
    assert p.default_model == "gpt-5.4" and models[0] != "gpt-4o"  # current models first
    assert {"gpt-5.4", "gpt-5.4-mini", "gpt-4o"} <= set(models)  # gpt-4o: deprecated, still served
    assert not {"gpt-3.5-turbo", "o3-mini", "gpt-4-turbo"} & set(models)  # retired: not listed


async def test_registry_builds_a_provider_without_network_or_key() -> None:
    provider = load("openai", Settings(openai_base_url=f"http://127.0.0.1:{free_port()}/v1"))
    assert isinstance(provider, Provider) and isinstance(provider, OpenAIProvider)
    assert (provider.name, provider.default_model) == ("openai", "gpt-5.4")
    assert await provider.available() == await provider.available()
    status = await provider.available()
    assert not status.ok and status.reason == "OPENAI_API_KEY not set"
    with pytest.raises(ProviderUnavailableError):
        await provider.complete(req())
    with pytest.raises(ProviderUnavailableError):
        await collect(provider.stream(req()))
    assert "gpt-4o" in await provider.models()
    await provider.aclose()


# ---------------------------------------------------------------- against the fake server


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with running_fake_openai() as server:
        yield server


@pytest.fixture
async def provider(fake: FakeOpenAI) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider(Settings(openai_api_key=KEY, openai_base_url=fake.base_url))
    yield p
    await p.aclose()


async def test_available_with_key_makes_no_request(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    assert (await provider.available()).ok
    assert fake.requests == []


async def test_complete(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    r = await provider.complete(req("hello", system="be kind", temperature=0.5))
    assert (r.content, r.provider, r.model, r.finish_reason) == ("Hello from fake OpenAI", "openai", "gpt-4o",
                                                                  "stop")
    assert r.usage.output_tokens == 4 and r.usage.input_tokens > 0
    sent = fake.requests[-1]
    assert sent["messages"][0] == {"role": "system", "content": "be kind"} and sent["temperature"] == 0.5
    assert "stream" not in sent
    assert fake.headers[-1]["authorization"] == f"Bearer {KEY}"


async def test_complete_honours_max_tokens(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    r = await provider.complete(req(max_tokens=2))
    assert (r.content, r.finish_reason, r.usage.output_tokens) == ("Hello from", "length", 2)
    assert fake.requests[-1]["max_tokens"] == 2


async def test_stream(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    fake.reply_text = "one two three four"
    events = await collect(provider.stream(req()))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["one", " two", " three", " four"]
    end = events[-1]
    assert isinstance(end, StreamEnd) and sum(isinstance(e, StreamEnd) for e in events) == 1
    assert (end.finish_reason, end.usage.output_tokens, end.model) == ("stop", 4, "gpt-4o")
    assert end.usage.input_tokens > 0
    assert fake.requests[-1]["stream"] is True
    assert fake.requests[-1]["stream_options"] == {"include_usage": True}


async def test_stream_length_finish(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    events = await collect(provider.stream(req(max_tokens=1)))
    end = events[-1]
    assert text_of(events) == "Hello" and isinstance(end, StreamEnd) and end.finish_reason == "length"


async def test_stream_without_done_after_finish_reason_is_accepted(fake: FakeOpenAI,
                                                                   provider: OpenAIProvider) -> None:
    fake.omit_done = True  # llama.cpp-style servers
    events = await collect(provider.stream(req()))
    end = events[-1]
    assert text_of(events) == "Hello from fake OpenAI"
    assert isinstance(end, StreamEnd) and end.usage.output_tokens == 4


async def test_429_with_retry_after_is_retryable(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    fake.fail_next(429, n=2, retry_after=2)
    with pytest.raises(UpstreamStatusError) as info:
        await provider.complete(req())
    exc = info.value
    assert (exc.upstream_status, exc.retryable, exc.retry_after, exc.upstream_type) == (429, True, 2.0, "requests")
    assert "Rate limit reached" in exc.message and exc.provider == "openai"
    with pytest.raises(UpstreamStatusError) as info:
        await collect(provider.stream(req()))
    assert (info.value.upstream_status, info.value.retry_after) == (429, 2.0)
    assert (await provider.complete(req())).content == "Hello from fake OpenAI"  # the script is used up


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_retryable(fake: FakeOpenAI, provider: OpenAIProvider, status: int) -> None:
    fake.fail_next(status, n=2)
    with pytest.raises(UpstreamStatusError) as info:
        await provider.complete(req())
    assert info.value.upstream_status == status and info.value.retryable
    with pytest.raises(UpstreamStatusError) as info:
        await collect(provider.stream(req()))
    assert info.value.upstream_status == status and info.value.retryable


@pytest.mark.parametrize("status", [400, 401, 404])
async def test_client_errors_are_not_retryable(fake: FakeOpenAI, provider: OpenAIProvider, status: int) -> None:
    fake.fail_next(status, n=2)
    with pytest.raises(UpstreamStatusError) as info:
        await provider.complete(req())
    assert info.value.upstream_status == status and not info.value.retryable
    assert info.value.upstream_type == "invalid_request_error"
    with pytest.raises(UpstreamStatusError) as info:
        await collect(provider.stream(req()))
    assert info.value.upstream_status == status and not info.value.retryable


async def test_wrong_key_is_a_401_from_the_real_auth_check(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    fake.api_key = "another-key"
    with pytest.raises(UpstreamStatusError) as info:
        await provider.complete(req())
    assert info.value.upstream_status == 401 and not info.value.retryable


async def test_mid_stream_error_event(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    fake.error_event_next(after_chunks=2)
    seen: list[ProviderEvent] = []
    with pytest.raises(UpstreamStatusError) as info:
        async for event in provider.stream(req()):
            seen.append(event)
    assert text_of(seen) == "Hello from" and not any(isinstance(e, StreamEnd) for e in seen)
    assert info.value.upstream_status == 500 and info.value.retryable
    assert info.value.upstream_type == "server_error"


@pytest.mark.parametrize("clean", [False, True])
async def test_cut_stream_is_a_protocol_error(fake: FakeOpenAI, provider: OpenAIProvider, clean: bool) -> None:
    fake.cut_next(after_chunks=1, clean=clean)
    seen: list[ProviderEvent] = []
    with pytest.raises(UpstreamProtocolError) as info:
        async for event in provider.stream(req()):
            seen.append(event)
    assert text_of(seen) == "Hello" and info.value.retryable


async def test_cut_non_stream_is_a_protocol_error(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    fake.cut_next(after_chunks=0)
    with pytest.raises(UpstreamProtocolError):
        await provider.complete(req())


async def test_connection_refused() -> None:
    p = OpenAIProvider(Settings(openai_api_key=KEY, openai_base_url=f"http://127.0.0.1:{free_port()}/v1"))
    with pytest.raises(UpstreamConnectError) as info:
        await p.complete(req())
    assert type(info.value) is UpstreamConnectError and info.value.retryable
    with pytest.raises(UpstreamConnectError):
        await collect(p.stream(req()))
    await p.aclose()


async def test_read_timeout(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    fake.delay_next(1.0, n=2)
    with pytest.raises(UpstreamTimeoutError) as info:
        await provider.complete(req(timeout_s=0.2))
    assert info.value.retryable
    with pytest.raises(UpstreamTimeoutError):
        await collect(provider.stream(req(timeout_s=0.2)))


async def test_early_stop_closes_the_upstream_stream(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    fake.reply_text = " ".join(f"w{i}" for i in range(200))
    fake.chunk_delay = 0.02
    stream = cast(AsyncGenerator[ProviderEvent, None], provider.stream(req()))
    async with aclosing(stream) as events:
        got = [await anext(events), await anext(events)]
    assert text_of(got) == "w0 w1"
    for _ in range(200):
        if fake.disconnects:
            break
        await asyncio.sleep(0.01)
    assert fake.disconnects == 1
    assert (await provider.complete(req())).content.startswith("w0 w1 w2")  # the pool is still healthy


async def test_api_key_never_in_error_messages(fake: FakeOpenAI, provider: OpenAIProvider) -> None:
    errors: list[ProviderError] = []
    fake.fail_next(401, n=2, message=f"Incorrect API key provided: {KEY}.")  # a server that echoes the key
    for call in (provider.complete(req()), collect(provider.stream(req()))):
        with pytest.raises(UpstreamStatusError) as info:
            await call
        errors.append(info.value)
    fake.fail_next(429, retry_after=1)
    fake.error_event_next(1)
    fake.cut_next(1)
    for call in (provider.complete(req()), collect(provider.stream(req())), collect(provider.stream(req()))):
        with pytest.raises(ProviderError) as any_info:
            await call
        errors.append(any_info.value)
    assert "[redacted]" in errors[0].message
    for exc in errors:
        assert KEY not in str(exc) and KEY not in repr(exc.to_dict()) and KEY not in exc.message


# ---------------------------------------------------------------- fidelity: the official SDK reads the fake


def test_sdk_parses_non_stream_reply(fake: FakeOpenAI) -> None:
    client = openai.OpenAI(base_url=fake.base_url, api_key="test", max_retries=0)
    r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.choices[0].message.content == "Hello from fake OpenAI" and r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.completion_tokens == 4


def test_sdk_parses_stream_with_usage(fake: FakeOpenAI) -> None:
    client = openai.OpenAI(base_url=fake.base_url, api_key="test", max_retries=0)
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from fake OpenAI"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


def test_sdk_sees_errors_as_the_real_api_raises_them(fake: FakeOpenAI) -> None:
    client = openai.OpenAI(base_url=fake.base_url, api_key="test", max_retries=0)
    fake.fail_next(429, retry_after=3)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert info.value.response.headers["retry-after"] == "3"
    fake.error_event_next(1)
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                            stream=True))
    assert [m.id for m in client.models.list()] == fake.models
    fake.api_key = "the-right-key"
    with pytest.raises(openai.AuthenticationError) as auth:
        client.models.list()
    assert auth.value.code == "invalid_api_key"
