"""OpenAI-compatible presets (issue 12 item 3): each preset's deployment against the fake OpenAI server
reproducing that service's quirk — Groq's usage inside x_groq, Mistral's strict schema (no stream_options,
random_seed), DeepSeek's cache-hit tokens, OpenRouter's keep-alive comments and attribution headers,
Perplexity's missing /models, Together/Fireworks usage on the last chunk, llama.cpp ending without [DONE],
local servers without a key — plain and streamed, with usage read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rhetor.providers import Providers
from rhetor.providers.compatible import CompatibleProvider
from rhetor.providers.deployments import parse_deployments
from rhetor.providers.presets import PRESETS
from rhetor.types import ChatRequest, Message, StreamEnd, TextDelta
from tests.conftest import test_settings as settings_for
from tests.fakes.openai import FakeOpenAI, running_fake_openai

LOCAL = ("vllm", "llama.cpp", "lm-studio")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with running_fake_openai() as f:
        yield f


def _provider(tmp_path: Path, fake: FakeOpenAI, name: str) -> tuple[Providers, CompatibleProvider]:
    entry = {"name": f"my-{name}", "kind": "openai", "preset": name, "base_url": fake.base_url}
    if name not in LOCAL:
        entry["api_key"] = f"key-{name}"
    providers = Providers(settings_for(tmp_path), parse_deployments([entry]))
    member = providers.get(f"my-{name}")._members[0]  # type: ignore[attr-defined]
    assert isinstance(member, CompatibleProvider)
    return providers, member


@pytest.mark.parametrize("name", list(PRESETS))
async def test_preset_against_its_quirk(tmp_path: Path, fake: FakeOpenAI, name: str) -> None:
    fake.quirk = name
    fake.requests.clear()
    fake.headers.clear()
    providers, provider = _provider(tmp_path, fake, name)
    try:
        assert (await providers.get(f"my-{name}").available()).ok
        request = ChatRequest(model="some-model", messages=[Message("user", "Hi there")], seed=7)
        reply = await provider.complete(request)
        assert reply.content == fake.reply_text
        assert reply.usage.output_tokens > 0
        text, end = "", None
        async for event in provider.stream(request):
            if isinstance(event, TextDelta):
                text += event.text
            elif isinstance(event, StreamEnd):
                end = event
        assert text == fake.reply_text and end is not None
        assert end.usage.output_tokens > 0, f"{name}: streamed usage lost"  # wherever the service puts it
        body = fake.requests[-1]
        if name == "mistral":  # the fake refuses both with 422, as Mistral does
            assert "stream_options" not in body and body["random_seed"] == 7 and "seed" not in body
        else:
            assert body["seed"] == 7 and body.get("stream_options") == {"include_usage": True}
        if name == "deepseek":
            assert reply.usage.cached_input_tokens == 3 and end.usage.cached_input_tokens == 3
        if name == "openrouter":
            assert fake.headers[-1]["x-title"] == "Rhetor" and fake.headers[-1]["http-referer"]
        if name not in LOCAL:
            assert fake.headers[-1]["authorization"] == f"Bearer key-{name}"
        models = await provider.models()
        if name == "perplexity":
            assert "sonar" in models  # no GET /models there: the preset's list
        else:
            assert models == fake.models  # discovered from GET /models
    finally:
        fake.quirk = None
        await providers.aclose()


def test_mistral_quirk_is_real(tmp_path: Path, fake: FakeOpenAI) -> None:
    """Without the preset (plain OpenAI translation) the Mistral fake refuses the stream: the quirk matters."""
    import httpx

    fake.quirk = "mistral"
    try:
        r = httpx.post(f"{fake.base_url}/chat/completions", headers={"authorization": "Bearer k"},
                       json={"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True,
                             "stream_options": {"include_usage": True}})
        assert r.status_code == 422 and "stream_options" in r.text
    finally:
        fake.quirk = None
