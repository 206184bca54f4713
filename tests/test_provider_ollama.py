"""The Ollama provider: pure translation tests, then the provider against the wire-faithful fake Ollama
server (native /api/chat JSON and NDJSON, /api/tags)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any, cast

import httpx
import orjson
import pytest

from rhetor.errors import (
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from rhetor.providers import load
from rhetor.providers.base import Provider
from rhetor.providers.ollama import (
    OllamaProvider,
    StreamState,
    build_payload,
    finish_reason,
    model_names,
    parse_response,
)
from rhetor.settings import Settings
from rhetor.types import ChatRequest, Message, ProviderEvent, StreamEnd, TextDelta
from tests.fakes.ollama import FakeOllama, running_fake_ollama
from tests.fakes.server import free_port


def req(text: str = "hi there", **kw: Any) -> ChatRequest:
    return ChatRequest(model=kw.pop("model", "llama3"), messages=[Message("user", text)], **kw)


async def collect(gen: AsyncIterator[ProviderEvent]) -> list[ProviderEvent]:
    return [event async for event in gen]


def text_of(events: list[ProviderEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def down_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


# ---------------------------------------------------------------- pure translation


def test_payload_minimal_is_explicitly_non_streaming() -> None:
    assert build_payload(req()) == {"model": "llama3", "messages": [{"role": "user", "content": "hi there"}],
                                    "stream": False}


def test_payload_system_first_and_options() -> None:
    request = ChatRequest(model="llama3", messages=[Message("user", "a")], system="be brief", temperature=0.1,
                          top_p=0.8, max_tokens=12, stop=["END"])
    payload = build_payload(request, stream=True)
    assert payload["messages"][0] == {"role": "system", "content": "be brief"} and payload["stream"] is True
    assert payload["options"] == {"temperature": 0.1, "top_p": 0.8, "num_predict": 12, "stop": ["END"]}


def test_parse_response() -> None:
    data = {"model": "llama3", "created_at": "2024-05-01T10:00:00Z",
            "message": {"role": "assistant", "content": "Hi!"}, "done": True, "done_reason": "length",
            "prompt_eval_count": 26, "eval_count": 3}
    r = parse_response(data, "llama3")
    assert (r.content, r.provider, r.model, r.finish_reason) == ("Hi!", "ollama", "llama3", "length")
    assert (r.usage.input_tokens, r.usage.output_tokens) == (26, 3)
    with pytest.raises(UpstreamProtocolError):
        parse_response({"done": True}, "llama3")
    with pytest.raises(UpstreamStatusError) as info:
        parse_response({"error": "out of memory"}, "llama3")
    assert info.value.retryable and "out of memory" in info.value.message


@pytest.mark.parametrize(("wire", "normalized"), [("stop", "stop"), ("length", "length"), ("load", "stop"),
                                                    (None, "stop")])
def test_finish_reason(wire: Any, normalized: str) -> None:
    assert finish_reason(wire) == normalized


def test_stream_state() -> None:
    state = StreamState("llama3")
    assert state.feed('{"model":"llama3","message":{"role":"assistant","content":"Hi"},"done":false}') == \
        TextDelta("Hi")
    assert state.feed("") is None
    with pytest.raises(UpstreamProtocolError):
        state.end()
    state.feed('{"model":"llama3:latest","message":{"role":"assistant","content":""},"done":true,'
               '"done_reason":"stop","prompt_eval_count":9,"eval_count":1}')
    end = state.end()
    assert (end.finish_reason, end.usage.input_tokens, end.usage.output_tokens, end.model) == (
        "stop", 9, 1, "llama3:latest")
    with pytest.raises(UpstreamStatusError) as info:
        StreamState("m").feed('{"error":"llama runner process has terminated"}')
    assert info.value.upstream_status == 500 and info.value.retryable
    with pytest.raises(UpstreamProtocolError):
        StreamState("m").feed("{not json")


def test_model_names_lists_latest_aliases() -> None:
    tags = {"models": [{"name": "llama3:latest", "model": "llama3:latest"}, {"name": "mistral:7b"},
                       {"model": "qwen2:latest"}, {"bogus": 1}]}
    assert model_names(tags) == ["llama3:latest", "llama3", "mistral:7b", "qwen2:latest", "qwen2"]
    assert model_names({"models": None}) == [] and model_names("x") == []


async def test_registry_builds_a_provider_without_network() -> None:
    provider = load("ollama", Settings(ollama_host=down_url()))
    assert isinstance(provider, Provider) and isinstance(provider, OllamaProvider)
    assert (provider.name, provider.default_model) == ("ollama", "llama3")
    assert provider.context_window("llama3") == 8192
    await provider.aclose()


# ---------------------------------------------------------------- against the fake server


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with running_fake_ollama() as server:
        yield server


@pytest.fixture
async def provider(fake: FakeOllama) -> AsyncIterator[OllamaProvider]:
    p = OllamaProvider(Settings(ollama_host=fake.base_url))
    yield p
    await p.aclose()


def test_fake_streams_ndjson_by_default(fake: FakeOllama) -> None:
    r = httpx.post(fake.base_url + "/api/chat", json={"model": "llama3", "messages": []})
    assert r.headers["content-type"] == "application/x-ndjson"
    lines = [orjson.loads(line) for line in r.text.splitlines()]
    assert [line["done"] for line in lines] == [False, False, False, False, True]
    assert lines[-1]["eval_count"] == 4 and lines[-1]["done_reason"] == "stop"


async def test_complete(fake: FakeOllama, provider: OllamaProvider) -> None:
    r = await provider.complete(req(system="be kind", temperature=0.3))
    assert (r.content, r.provider, r.model, r.finish_reason) == ("Hello from fake Ollama", "ollama", "llama3",
                                                                  "stop")
    assert r.usage.output_tokens == 4 and r.usage.input_tokens > 0
    sent = fake.requests[-1]
    assert sent["stream"] is False and sent["messages"][0] == {"role": "system", "content": "be kind"}
    assert sent["options"] == {"temperature": 0.3}


async def test_complete_num_predict(fake: FakeOllama, provider: OllamaProvider) -> None:
    r = await provider.complete(req(max_tokens=2))
    assert (r.content, r.finish_reason, r.usage.output_tokens) == ("Hello from", "length", 2)
    assert fake.requests[-1]["options"]["num_predict"] == 2


async def test_stream(fake: FakeOllama, provider: OllamaProvider) -> None:
    fake.reply_text = "one two three"
    events = await collect(provider.stream(req()))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["one", " two", " three"]
    end = events[-1]
    assert isinstance(end, StreamEnd) and sum(isinstance(e, StreamEnd) for e in events) == 1
    assert (end.finish_reason, end.usage.output_tokens, end.model) == ("stop", 3, "llama3")
    assert end.usage.input_tokens > 0 and fake.requests[-1]["stream"] is True


async def test_stream_length(fake: FakeOllama, provider: OllamaProvider) -> None:
    events = await collect(provider.stream(req(max_tokens=1)))
    end = events[-1]
    assert text_of(events) == "Hello" and isinstance(end, StreamEnd) and end.finish_reason == "length"


async def test_unknown_model_is_a_404_not_retryable(fake: FakeOllama, provider: OllamaProvider) -> None:
    with pytest.raises(UpstreamStatusError) as info:
        await provider.complete(req(model="nope"))
    exc = info.value
    assert (exc.upstream_status, exc.retryable) == (404, False)
    assert 'model "nope" not found, try pulling it first' in exc.message
    with pytest.raises(UpstreamStatusError) as info:
        await collect(provider.stream(req(model="nope")))
    assert info.value.upstream_status == 404


async def test_429_with_retry_after(fake: FakeOllama, provider: OllamaProvider) -> None:
    fake.fail_next(429, n=2, retry_after=1.5)
    with pytest.raises(UpstreamStatusError) as info:
        await provider.complete(req())
    assert (info.value.upstream_status, info.value.retryable, info.value.retry_after) == (429, True, 1.5)
    with pytest.raises(UpstreamStatusError) as info:
        await collect(provider.stream(req()))
    assert info.value.retry_after == 1.5
    assert (await provider.complete(req())).content == "Hello from fake Ollama"


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (400, False), (401, False)])
async def test_error_statuses(fake: FakeOllama, provider: OllamaProvider, status: int, retryable: bool) -> None:
    fake.fail_next(status, n=2)
    with pytest.raises(UpstreamStatusError) as info:
        await provider.complete(req())
    assert (info.value.upstream_status, info.value.retryable) == (status, retryable)
    with pytest.raises(UpstreamStatusError) as info:
        await collect(provider.stream(req()))
    assert (info.value.upstream_status, info.value.retryable) == (status, retryable)


async def test_mid_stream_error_line(fake: FakeOllama, provider: OllamaProvider) -> None:
    fake.error_event_next(after_chunks=2)
    seen: list[ProviderEvent] = []
    with pytest.raises(UpstreamStatusError) as info:
        async for event in provider.stream(req()):
            seen.append(event)
    assert text_of(seen) == "Hello from" and not any(isinstance(e, StreamEnd) for e in seen)
    assert info.value.retryable and "unexpected EOF" in info.value.message


@pytest.mark.parametrize("clean", [False, True])
async def test_cut_stream_is_a_protocol_error(fake: FakeOllama, provider: OllamaProvider, clean: bool) -> None:
    fake.cut_next(after_chunks=1, clean=clean)
    seen: list[ProviderEvent] = []
    with pytest.raises(UpstreamProtocolError) as info:
        async for event in provider.stream(req()):
            seen.append(event)
    assert text_of(seen) == "Hello" and info.value.retryable


async def test_cut_non_stream_is_a_protocol_error(fake: FakeOllama, provider: OllamaProvider) -> None:
    fake.cut_next(after_chunks=0)
    with pytest.raises(UpstreamProtocolError):
        await provider.complete(req())


async def test_connection_refused() -> None:
    p = OllamaProvider(Settings(ollama_host=down_url()))
    with pytest.raises(UpstreamConnectError) as info:
        await p.complete(req())
    assert type(info.value) is UpstreamConnectError and info.value.retryable
    with pytest.raises(UpstreamConnectError):
        await collect(p.stream(req()))
    await p.aclose()


async def test_read_timeout(fake: FakeOllama, provider: OllamaProvider) -> None:
    fake.delay_next(1.0, n=2)
    with pytest.raises(UpstreamTimeoutError):
        await provider.complete(req(timeout_s=0.2))
    with pytest.raises(UpstreamTimeoutError):
        await collect(provider.stream(req(timeout_s=0.2)))


async def test_early_stop_closes_the_upstream_stream(fake: FakeOllama, provider: OllamaProvider) -> None:
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
    assert (await provider.complete(req())).content.startswith("w0 w1 w2")


async def test_available_when_up_is_cached(fake: FakeOllama) -> None:
    p = OllamaProvider(Settings(ollama_host=fake.base_url, availability_ttl_s=60))
    first, second = await p.available(), await p.available()
    assert first.ok and second.ok and fake.tags_requests == 1
    await p.aclose()


async def test_available_reprobes_after_ttl(fake: FakeOllama) -> None:
    p = OllamaProvider(Settings(ollama_host=fake.base_url, availability_ttl_s=0))
    await p.available()
    await asyncio.sleep(0.01)
    await p.available()
    assert fake.tags_requests == 2
    await p.aclose()


async def test_available_when_down() -> None:
    host = down_url()
    p = OllamaProvider(Settings(ollama_host=host))
    status = await p.available()
    assert not status.ok and status.reason == f"Ollama not reachable at {host}"
    assert await p.models() == []
    await p.aclose()


async def test_models_from_tags_are_cached(fake: FakeOllama) -> None:
    fake.models = ["llama3:latest", "mistral:7b"]
    p = OllamaProvider(Settings(ollama_host=fake.base_url, availability_ttl_s=60))
    assert await p.models() == ["llama3:latest", "llama3", "mistral:7b"]
    assert (await p.available()).ok  # the probe reads /api/tags too, and refreshes the list
    fake.models = ["other:latest"]
    assert await p.models() == ["llama3:latest", "llama3", "mistral:7b"]  # within the TTL
    assert fake.tags_requests == 2
    await p.aclose()
