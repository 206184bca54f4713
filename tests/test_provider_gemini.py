"""The Gemini provider: pure translation (contents, systemInstruction, functionDeclarations/functionCall/
functionResponse, generationConfig, usageMetadata, finish and safety reasons), then over real HTTP against the
fake Gemini (plain, SSE stream, tool calls, countTokens, errors with their status, a cut stream); the official
google-genai SDK against the same fake proves it wire-faithful."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from rhetor.errors import ProviderUnavailableError, UpstreamProtocolError, UpstreamStatusError
from rhetor.providers import load
from rhetor.providers.base import Provider, TokenCounter
from rhetor.providers.gemini import GeminiProvider, StreamState, build_payload, parse_response
from rhetor.settings import Settings
from rhetor.types import (
    ChatRequest,
    Message,
    ProviderEvent,
    StreamEnd,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    Usage,
)
from tests.fakes.gemini import FakeGemini, running_fake_gemini

KEY = "gm-test-key"
WEATHER = ToolSpec("get_weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}})


def req(text: str = "Hi there", **kw: Any) -> ChatRequest:
    return ChatRequest(model=kw.pop("model", "gemini-3.8-flash"), messages=[Message("user", text)], **kw)


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with running_fake_gemini() as f:
        f.api_key = KEY
        yield f


def provider(fake: FakeGemini, key: str = KEY) -> GeminiProvider:
    return GeminiProvider(Settings(gemini_api_key=key or None, gemini_base_url=fake.base_url))


# ---------------------------------------------------------------- pure translation


def test_payload_carries_system_tools_and_generation_config() -> None:
    call = ToolCall("call_1", "get_weather", '{"city": "Oslo"}')
    request = ChatRequest(
        model="gemini-3.8-flash", system="Be brief",
        messages=[Message("system", "Inline rule"), Message("user", "Weather?"),
                  Message("assistant", "", tool_calls=[call]),
                  Message("tool", '{"temp": 3}', tool_call_id="call_1"), Message("tool", "oops", tool_call_id="x",
                                                                                  is_error=True)],
        temperature=0.2, top_p=0.9, max_tokens=50, stop=["END"], seed=7, extra={"top_k": 5},
        tools=[WEATHER], tool_choice=ToolChoice("tool", "get_weather"),
        response_format={"type": "json_schema", "json_schema": {"schema": {"type": "object"}}})
    p = build_payload(request)
    assert p["systemInstruction"] == {"parts": [{"text": "Be brief\n\nInline rule"}]}
    assert [c["role"] for c in p["contents"]] == ["user", "model", "user"]
    assert p["contents"][1]["parts"] == [{"functionCall": {"id": "call_1", "name": "get_weather",
                                                          "args": {"city": "Oslo"}}}]
    results = p["contents"][2]["parts"]  # both tool results in one user turn, matched by function name
    assert results[0] == {"functionResponse": {"name": "get_weather", "response": {"temp": 3}, "id": "call_1"}}
    assert results[1]["functionResponse"]["response"] == {"error": "oops"}
    assert p["generationConfig"] == {"temperature": 0.2, "topP": 0.9, "maxOutputTokens": 50, "seed": 7,
                                     "stopSequences": ["END"], "topK": 5, "responseMimeType": "application/json",
                                     "responseJsonSchema": {"type": "object"}}
    assert p["tools"] == [{"functionDeclarations": [{"name": "get_weather", "description": "Weather for a city",
                                                     "parametersJsonSchema": WEATHER.parameters}]}]
    assert p["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    assert "model" not in p  # the model goes in the URL


def test_response_usage_finish_and_safety_reasons() -> None:
    data = {"candidates": [{"content": {"role": "model", "parts": [{"text": "thinking", "thought": True},
                                                                   {"text": "Hello"}]},
                            "finishReason": "MAX_TOKENS"}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 4, "thoughtsTokenCount": 6,
                              "cachedContentTokenCount": 8, "totalTokenCount": 20}, "modelVersion": "gemini-x"}
    r = parse_response(data, "gemini-3.8-flash")
    assert (r.content, r.finish_reason, r.model, r.provider) == ("Hello", "length", "gemini-x", "gemini")
    assert r.usage == Usage(10, 10, cached_input_tokens=8, reasoning_tokens=6)  # thoughts billed as output
    data["candidates"][0]["finishReason"] = "SAFETY"
    assert parse_response(data).finish_reason == "content_filter"
    blocked = parse_response({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                              "usageMetadata": {"promptTokenCount": 3}})
    assert (blocked.content, blocked.finish_reason) == ("", "content_filter")
    tool = parse_response({"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]},
                                           "finishReason": "STOP"}]})
    assert tool.finish_reason == "tool_calls" and tool.tool_calls == [ToolCall("call_0", "f", '{"a":1}')]
    with pytest.raises(UpstreamStatusError) as info:
        parse_response({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}})
    assert info.value.upstream_status == 429 and info.value.retryable
    with pytest.raises(UpstreamProtocolError):
        parse_response({"candidates": []})


def test_stream_state_needs_a_finish_reason() -> None:
    state = StreamState("gemini-3.8-flash")
    assert state.feed('data: {"candidates":[{"content":{"parts":[{"text":"Hi"}]}}]}') == TextDelta("Hi")
    assert state.feed("") is None and not state.finished
    with pytest.raises(UpstreamProtocolError):
        state.end()
    state.feed('data: {"candidates":[{"content":{"parts":[{"text":"!"}]},"finishReason":"STOP"}],'
               '"usageMetadata":{"promptTokenCount":2,"candidatesTokenCount":2}}')
    assert state.end() == StreamEnd("stop", Usage(2, 2), "gemini-3.8-flash")


# ---------------------------------------------------------------- over HTTP, against the fake


async def collect(p: GeminiProvider, request: ChatRequest) -> list[ProviderEvent]:
    return [e async for e in p.stream(request)]


async def test_complete_and_stream_against_the_fake(fake: FakeGemini) -> None:
    p = provider(fake)
    assert isinstance(p, Provider) and isinstance(p, TokenCounter)
    r = await p.complete(req("Hello world", system="Be nice", max_tokens=100))
    assert (r.content, r.finish_reason, r.provider) == ("Hello from fake Gemini", "stop", "gemini")
    assert r.usage.input_tokens == 4 and r.usage.output_tokens == 4  # the fake counts words
    assert fake.paths[-1] == "/v1/models/gemini-3.8-flash:generateContent"
    assert fake.headers[-1]["x-goog-api-key"] == KEY and fake.requests[-1]["systemInstruction"]
    events = await collect(p, req(max_tokens=2))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hello", " from"]
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason == "length" and end.usage.output_tokens == 2
    assert fake.paths[-1].endswith(":streamGenerateContent?alt=sse")
    await p.aclose()


async def test_tool_calls_round_trip(fake: FakeGemini) -> None:
    p = provider(fake)
    r = await p.complete(req("Weather in Paris?", tools=[WEATHER]))
    assert r.finish_reason == "tool_calls" and r.tool_calls[0].name == "get_weather"
    assert orjson.loads(r.tool_calls[0].arguments) == {"city": "Paris"}
    events = await collect(p, req("Weather?", tools=[WEATHER]))
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(deltas) == 1 and deltas[0].name == "get_weather" and deltas[0].id
    assert isinstance(events[-1], StreamEnd) and events[-1].finish_reason == "tool_calls"
    answer = await p.complete(ChatRequest(model="gemini-3.8-flash", tools=[WEATHER], messages=[
        Message("user", "Weather?"), Message("assistant", "", tool_calls=r.tool_calls),
        Message("tool", '{"temp": 21}', tool_call_id=r.tool_calls[0].id)]))
    assert answer.content == 'The tool said: {"temp":21}' and answer.finish_reason == "stop"
    await p.aclose()


async def test_count_tokens_and_blocked_prompts(fake: FakeGemini) -> None:
    p = provider(fake)
    assert await p.count_tokens(req("one two three", system="four five")) == 5
    assert fake.paths[-1].endswith(":countTokens") and "generateContentRequest" in fake.requests[-1]
    fake.block_prompt = True
    r = await p.complete(req("something bad"))
    assert (r.content, r.finish_reason) == ("", "content_filter")
    events = await collect(p, req("something bad"))
    assert events == [StreamEnd("content_filter", Usage(2, 0), "gemini-3.8-flash")]
    await p.aclose()


async def test_errors_map_to_the_error_tree(fake: FakeGemini) -> None:
    p = provider(fake)
    fake.fail_next(429, retry_after=3)
    with pytest.raises(UpstreamStatusError) as info:
        await p.complete(req())
    assert info.value.upstream_status == 429 and info.value.retry_after == 3 and "quota" in info.value.message
    fake.fail_next(503)
    with pytest.raises(UpstreamStatusError) as stream_info:
        await collect(p, req())
    assert stream_info.value.upstream_status == 503 and stream_info.value.retryable
    bad = provider(fake, key="wrong-key")
    with pytest.raises(UpstreamStatusError) as key_info:
        await bad.complete(req())
    assert key_info.value.upstream_status == 400 and "wrong-key" not in key_info.value.message
    with pytest.raises(ProviderUnavailableError):
        await provider(fake, key="").complete(req())
    assert not (await provider(fake, key="").available()).ok
    fake.cut_next(1)  # one chunk, then the connection drops before any finishReason
    with pytest.raises(UpstreamProtocolError):
        await collect(p, req())
    await p.aclose()
    await bad.aclose()


def test_registry_and_settings_from_env() -> None:
    s = Settings.from_env({"GOOGLE_API_KEY": "g-key", "GEMINI_BASE_URL": "http://127.0.0.1:9"})
    assert s.gemini_api_key is not None and s.gemini_api_key.get_secret_value() == "g-key"
    assert Settings.from_env({"GEMINI_API_KEY": "a", "GOOGLE_API_KEY": "b"}).gemini_api_key.get_secret_value() == "a"  # type: ignore[union-attr]
    p = load("google", s)
    assert isinstance(p, GeminiProvider) and p.default_model == "gemini-3.8-flash"
    assert p.context_window("gemini-2.5-pro") == 1_048_576


# ---------------------------------------------------------------- the official SDK against the fake


def test_google_genai_sdk_against_the_fake(fake: FakeGemini) -> None:
    genai = pytest.importorskip("google.genai")
    from google.genai import types

    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=fake.base_url))
    r = client.models.generate_content(model="gemini-3.8-flash", contents="Hello there",
                                       config=types.GenerateContentConfig(system_instruction="Be brief"))
    assert r.text == "Hello from fake Gemini"
    assert r.usage_metadata is not None and r.usage_metadata.prompt_token_count == 4
    assert r.candidates is not None and r.candidates[0].finish_reason == types.FinishReason.STOP
    assert fake.requests[-1]["systemInstruction"]["parts"][0]["text"] == "Be brief"
    chunks = list(client.models.generate_content_stream(model="gemini-3.8-flash", contents="Hi"))
    assert "".join(c.text or "" for c in chunks) == "Hello from fake Gemini" and len(chunks) == 4
    assert client.models.count_tokens(model="gemini-3.8-flash", contents="one two three").total_tokens == 3
    declared = types.Tool(function_declarations=[types.FunctionDeclaration(
        name="get_weather", description="Weather", parameters_json_schema=WEATHER.parameters)])
    tool = client.models.generate_content(
        model="gemini-3.8-flash", contents="Weather?",
        config=types.GenerateContentConfig(tools=[declared],
                                           automatic_function_calling=types.AutomaticFunctionCallingConfig(
                                               disable=True)))
    assert tool.function_calls is not None and tool.function_calls[0].name == "get_weather"
    assert tool.function_calls[0].args == {"city": "Paris"}
    fake.fail_next(429)
    with pytest.raises(genai.errors.ClientError) as info:
        client.models.generate_content(model="gemini-3.8-flash", contents="x",
                                       config=types.GenerateContentConfig(
                                           http_options=types.HttpOptions(retry_options=types.HttpRetryOptions(
                                               attempts=1))))
    assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"
