"""The official `anthropic` SDK (sync and async) against a real Rhetor whose upstreams are the fakes: every
provider behind the Anthropic-compatible front, plain and streamed, with tool_use/tool_result blocks, stop
reasons, usage and count_tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.fakes.stack import MATRIX, Stack, running_stack

TOOLS: list[Any] = [{"name": "get_weather", "description": "Weather for a city",
                     "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                      "required": ["city"]}}]
HI: list[Any] = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(Path(tmp_path_factory.mktemp("compat-anthropic"))) as s:
        yield s


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=stack.url, api_key="unused", max_retries=0) as c:
        yield c


@pytest.mark.parametrize("provider", list(MATRIX))
def test_create_every_provider(client: anthropic.Anthropic, provider: str) -> None:
    model, text = MATRIX[provider]
    m = client.messages.create(model=model, max_tokens=200, messages=HI, system="Be brief.")
    assert m.type == "message" and m.role == "assistant"
    assert m.content[0].type == "text" and m.content[0].text.startswith(text)
    assert m.stop_reason == "end_turn" and m.stop_sequence is None
    assert m.usage.output_tokens > 0 and m.usage.input_tokens > 0
    # same vendor: Anthropic's answer relayed as received (its own model name); others: provider/model
    assert m.model == "claude-sonnet-4-5" if provider == "anthropic" else m.model.startswith(provider + "/")


@pytest.mark.parametrize("provider", list(MATRIX))
def test_stream_every_provider(client: anthropic.Anthropic, provider: str) -> None:
    model, text = MATRIX[provider]
    with client.messages.stream(model=model, max_tokens=200, messages=HI) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed.startswith(text) and final.content[0].text == streamed
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0


def test_raw_event_sequence(client: anthropic.Anthropic) -> None:
    events = list(client.messages.create(model="openai/gpt-4o", max_tokens=100, messages=HI, stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[1] == "content_block_start"
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    delta = events[-2]
    assert delta.type == "message_delta" and delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == 4


@pytest.mark.parametrize(("provider", "seq"), [("anthropic", "from"), ("simulated", "simulated")])
def test_stop_sequences(client: anthropic.Anthropic, provider: str, seq: str) -> None:
    model, _ = MATRIX[provider]
    m = client.messages.create(model=model, max_tokens=200, messages=HI, stop_sequences=["zzz", seq])
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == seq
    assert seq not in m.content[0].text
    with client.messages.stream(model=model, max_tokens=200, messages=HI, stop_sequences=[seq]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == seq


def test_max_tokens_and_sampling_reach_openai(client: anthropic.Anthropic, stack: Stack) -> None:
    # this SDK version has no temperature/top_p parameters; the API (and Rhetor) still take them
    m = client.messages.create(model="openai/gpt-4o-mini", max_tokens=2, messages=HI, stop_sequences=["zz"],
                               metadata={"user_id": "u-9"}, extra_body={"temperature": 0.5, "top_p": 0.8})
    assert m.stop_reason == "max_tokens"
    sent = stack.openai.requests[-1]
    assert sent["max_tokens"] == 2 and sent["temperature"] == 0.5 and sent["top_p"] == 0.8
    assert sent["stop"] == ["zz"] and sent["user"] == "u-9"


def test_system_blocks_and_content_blocks(client: anthropic.Anthropic, stack: Stack) -> None:
    client.messages.create(model="openai/gpt-4o", max_tokens=50,
                           system=[{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}],
                           messages=[{"role": "user", "content": [{"type": "text", "text": "a"},
                                                                  {"type": "text", "text": "b"}]}])
    assert stack.openai.requests[-1]["messages"] == [{"role": "system", "content": "One.\n\nTwo."},
                                                     {"role": "user", "content": "ab"}]


@pytest.mark.parametrize("provider", list(MATRIX))
def test_tool_use_round_trip(client: anthropic.Anthropic, provider: str) -> None:
    model, _ = MATRIX[provider]
    ask: list[Any] = [{"role": "user", "content": "Weather in Paris? Use get_weather."}]
    m = client.messages.create(model=model, max_tokens=200, messages=ask, tools=TOOLS)
    assert m.stop_reason == "tool_use"
    use = next(b for b in m.content if b.type == "tool_use")
    assert use.name == "get_weather" and "city" in use.input
    follow = [*ask, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                            "content": [{"type": "text", "text": "18C and sunny"}]}]}]
    m2 = client.messages.create(model=model, max_tokens=200, messages=follow, tools=TOOLS)
    assert m2.stop_reason == "end_turn" and "18C and sunny" in m2.content[0].text


@pytest.mark.parametrize("provider", list(MATRIX))
def test_streamed_tool_use(client: anthropic.Anthropic, provider: str) -> None:
    model, _ = MATRIX[provider]
    with client.messages.stream(model=model, max_tokens=200, tools=TOOLS,
                                tool_choice={"type": "tool", "name": "get_weather"},
                                messages=[{"role": "user", "content": "get_weather"}]) as stream:
        final = stream.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    assert final.stop_reason == "tool_use" and len(uses) == 1
    assert uses[0].name == "get_weather" and uses[0].input.get("city")


def test_tool_choice_none_reaches_openai(client: anthropic.Anthropic, stack: Stack) -> None:
    m = client.messages.create(model="openai/gpt-4o", max_tokens=50, messages=HI, tools=TOOLS,
                               tool_choice={"type": "none"})
    assert m.stop_reason == "end_turn"
    assert stack.openai.requests[-1]["tool_choice"] == "none"


def test_unsupported_blocks_are_refused_not_dropped(client: anthropic.Anthropic) -> None:
    # images translate now (tests/test_fidelity.py); a PDF has no translation off Anthropic: refused, never dropped
    document = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model="simulated/simulated-fast", max_tokens=10,
                               messages=[{"role": "user", "content": [document]}])
    assert "messages[0].content[0] (document) is not supported by provider simulated" in err.value.message


def test_count_tokens_is_an_estimate(client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.count_tokens(model="anthropic/claude-sonnet-4-5", messages=HI * 1,
                                                        system="You are terse.", tools=TOOLS)
    counted = raw.parse()
    assert counted.input_tokens > 0
    assert raw.headers["x-rhetor-token-count"] == "estimate"
    longer = client.messages.count_tokens(model="anthropic/claude-sonnet-4-5",
                                          messages=[{"role": "user", "content": "hi " * 400}])
    assert longer.input_tokens > counted.input_tokens


async def test_async_client(stack: Stack) -> None:
    async with anthropic.AsyncAnthropic(base_url=stack.url, api_key="unused", max_retries=0) as client:
        m = await client.messages.create(model="ollama/llama3", max_tokens=50, messages=HI)
        assert m.content[0].text == "Hello from fake Ollama"
        stream = await client.messages.create(model="openai/gpt-4o", max_tokens=50, messages=HI, stream=True)
        kinds = [e.type async for e in stream]
        assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
        async with client.messages.stream(model="anthropic/claude-sonnet-4-5", max_tokens=50, messages=HI) as s:
            final = await s.get_final_message()
        assert final.content[0].text == "Hello from fake Anthropic"


def test_aliases_resolve(tmp_path: Path) -> None:
    aliases = {"fast": "openai/gpt-4o-mini", "team": "rhetor/chat"}
    with running_stack(tmp_path, model_aliases=aliases) as s, \
            anthropic.Anthropic(base_url=s.url, api_key="x", max_retries=0) as client:
        assert client.messages.create(model="fast", max_tokens=20, messages=HI).model == "openai/gpt-4o-mini"
        ids = [m.id for m in client.models.list()]
        assert {"fast", "team", "rhetor/chat", "openai/gpt-4o-mini"} <= set(ids)
        assert client.models.retrieve("fast").id == "fast"
        with pytest.raises(anthropic.NotFoundError):
            client.models.retrieve("nope/nothing")
