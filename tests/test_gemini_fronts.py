"""Gemini behind every front: the official openai and anthropic SDKs (and the native and legacy HTTP routes)
talk to a real Rhetor whose Gemini upstream is the fake — plain, streamed, with tools, count_tokens answered
by Gemini's own countTokens, and a failing Gemini stream falling back before its first event."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import orjson
import pytest

from rhetor.routing.config import parse_config
from tests.conftest import running_rhetor
from tests.conftest import test_settings as settings_for
from tests.fakes.gemini import FakeGemini, running_fake_gemini

HI = [{"role": "user", "content": "Hi there"}]
CITY = {"type": "object", "properties": {"city": {"type": "string"}}}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": CITY}}
CONFIG = parse_config({"default": {"targets": [{"provider": "gemini", "model": "gemini-3.8-flash"},
                                               {"provider": "simulated", "model": "simulated-fast"}]}})


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[FakeGemini, str]]:
    with running_fake_gemini() as fake:
        settings = settings_for(tmp_path, gemini_api_key="gm-key", gemini_base_url=fake.base_url)
        with running_rhetor(settings, CONFIG) as url:
            yield fake, url


def test_openai_sdk_with_gemini_behind(stack: tuple[FakeGemini, str]) -> None:
    fake, url = stack
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    for model in ("gemini/gemini-3.8-flash", "gemini-3.8-flash", "google/gemini-3.8-flash"):
        r = client.chat.completions.create(model=model, messages=HI, max_tokens=50)
        assert r.choices[0].message.content == "Hello from fake Gemini" and r.model == "gemini/gemini-3.8-flash"
        assert r.usage is not None and r.usage.completion_tokens == 4
    assert fake.paths[-1] == "/v1/models/gemini-3.8-flash:generateContent"
    stream = client.chat.completions.create(model="gemini-3.8-flash", messages=HI, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from fake Gemini"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 2
    assert fake.paths[-1].endswith(":streamGenerateContent?alt=sse")
    tool = client.chat.completions.create(model="gemini-3.8-flash", messages=HI, tools=[WEATHER],  # type: ignore[list-item]
                                          tool_choice="required")
    call = tool.choices[0].message.tool_calls
    assert tool.choices[0].finish_reason == "tool_calls" and call is not None
    assert call[0].function.name == "get_weather" and orjson.loads(call[0].function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    assert fake.requests[-1]["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


def test_anthropic_sdk_with_gemini_behind(stack: tuple[FakeGemini, str]) -> None:
    fake, url = stack
    client = anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0)
    msg = client.messages.create(model="gemini-3.8-flash", max_tokens=50, system="Be brief",
                                 messages=[{"role": "user", "content": "Hello"}])
    assert msg.content[0].text == "Hello from fake Gemini" and msg.stop_reason == "end_turn"  # type: ignore[union-attr]
    assert fake.requests[-1]["systemInstruction"] == {"parts": [{"text": "Be brief"}]}
    with client.messages.stream(model="gemini/gemini-3.8-flash", max_tokens=2,
                                messages=[{"role": "user", "content": "Hello"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from" and final.stop_reason == "max_tokens"
    counted = client.messages.with_raw_response.count_tokens(
        model="gemini-3.8-flash", system="four five", messages=[{"role": "user", "content": "one two three"}])
    assert counted.parse().input_tokens == 5  # Gemini's countTokens, not Rhetor's estimate
    assert counted.headers["x-rhetor-token-count"] == "gemini/gemini-3.8-flash"
    assert fake.paths[-1].endswith(":countTokens")
    estimate = httpx.post(f"{url}/v1/messages/count_tokens", headers={"anthropic-version": "2023-06-01"},
                          json={"model": "simulated-fast", "messages": [{"role": "user", "content": "hi"}]})
    assert estimate.status_code == 200 and estimate.json()["estimated"] is True  # others still estimate
    fake.api_key = "another-key"  # Gemini refuses the count (400): the estimate answers, marked as one
    fallback = httpx.post(f"{url}/v1/messages/count_tokens", headers={"anthropic-version": "2023-06-01"},
                          json={"model": "gemini-3.8-flash", "messages": [{"role": "user", "content": "hi"}]})
    assert fallback.status_code == 200 and fallback.json()["estimated"] is True


def test_native_and_legacy_routes_and_stream_fallback(stack: tuple[FakeGemini, str]) -> None:
    fake, url = stack
    with httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/api/v1/chat", json={"message": "Hello"})  # the default route: gemini first
        assert r.status_code == 200 and (r.json()["provider"], r.json()["model"]) == ("gemini", "gemini-3.8-flash")
        legacy = c.post("/message", json={"message": "Hello", "context_id": "ergon", "streaming": False,
                                          "options": {"provider": "gemini", "model": "gemini-3.8-flash"}})
        assert legacy.status_code == 200 and legacy.json()["message"] == "Hello from fake Gemini"
        listed = c.get("/providers").json()  # only a Gemini key: Gemini is the default provider
        assert (listed["default_provider"], listed["default_model"]) == ("gemini", "gemini-3.8-flash")
        gemini = {m["id"] for m in listed["providers"]["gemini"]["models"]}
        assert "gemini-3.8-flash" in gemini and "gemini-1.5-pro" not in gemini  # current models, none retired
        ids = {m["id"] for m in c.get("/v1/models").json()["data"]}
        assert "gemini/gemini-2.5-pro" in ids and "gemini/gemini-1.5-pro" not in ids
        assert "openai/gpt-3.5-turbo" not in ids and "anthropic/claude-3-sonnet-20240229" not in ids
        fake.fail_next(503, n=3)  # every retry of the stream's first target fails before its first event
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(model="rhetor/default", messages=HI, stream=True)
        chunks = list(raw.parse())
        assert raw.headers["x-rhetor-provider"] == "simulated" and raw.headers["x-rhetor-fallback"] == "true"
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)  # a whole answer
