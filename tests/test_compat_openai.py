"""The official `openai` SDK (sync and async) against a real Rhetor whose upstreams are the fakes: every
provider behind the OpenAI-compatible front, plain and streamed, with tools, usage and finish reasons."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.fakes.stack import MATRIX, Stack, running_stack

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(Path(tmp_path_factory.mktemp("compat-openai"))) as s:
        yield s


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0) as c:
        yield c


@pytest.mark.parametrize("provider", list(MATRIX))
def test_create_every_provider(client: openai.OpenAI, provider: str) -> None:
    model, text = MATRIX[provider]
    raw = client.chat.completions.with_raw_response.create(model=model, messages=HI, max_tokens=200)
    r = raw.parse()
    assert r.object == "chat.completion"
    assert r.choices[0].message.content.startswith(text)
    assert r.choices[0].finish_reason == "stop"
    # same vendor: the upstream's answer relayed as received (its own model name); others: provider/model
    assert r.model == "gpt-4o-mini" if provider == "openai" else r.model.startswith(provider + "/")
    assert raw.headers["x-rhetor-passthrough"] == ("true" if provider == "openai" else "false")
    assert r.usage is not None and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert raw.headers["x-rhetor-provider"] == provider
    assert raw.headers["x-rhetor-simulated"] == ("true" if provider == "simulated" else "false")


@pytest.mark.parametrize("provider", list(MATRIX))
def test_stream_every_provider(client: openai.OpenAI, provider: str) -> None:
    model, text = MATRIX[provider]
    chunks = list(client.chat.completions.create(model=model, messages=HI, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content.startswith(text)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_stream_without_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model=MATRIX["openai"][0], messages=HI, stream=True))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


def test_max_tokens_length_and_stop_reach_the_upstream(client: openai.OpenAI, stack: Stack) -> None:
    r = client.chat.completions.create(model="openai/gpt-4o-mini", messages=HI, max_completion_tokens=2, stop=["x"],
                                       temperature=0.3, top_p=0.9, seed=7, user="u-1",
                                       response_format={"type": "json_object"})
    assert r.choices[0].finish_reason == "length"
    sent = stack.openai.requests[-1]
    assert sent["max_completion_tokens"] == 2 and sent["stop"] == ["x"] and sent["temperature"] == 0.3  # as sent
    assert sent["top_p"] == 0.9 and sent["seed"] == 7 and sent["user"] == "u-1"
    assert sent["response_format"] == {"type": "json_object"}
    r = client.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=HI, max_tokens=2)
    assert r.choices[0].finish_reason == "length"
    assert stack.anthropic.requests[-1]["max_tokens"] == 2


def test_system_and_developer_messages_become_the_system_prompt(client: openai.OpenAI, stack: Stack) -> None:
    client.chat.completions.create(model="anthropic/claude-sonnet-4-5", max_tokens=50, messages=[
        {"role": "system", "content": "Be terse."}, {"role": "developer", "content": "No emoji."},
        {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]}])
    sent = stack.anthropic.requests[-1]
    assert sent["system"] == "Be terse.\n\nNo emoji."
    assert sent["messages"] == [{"role": "user", "content": "hi there"}]


@pytest.mark.parametrize("provider", list(MATRIX))
def test_tool_call_round_trip(client: openai.OpenAI, provider: str) -> None:
    model, _ = MATRIX[provider]
    ask = [{"role": "user", "content": "What is the weather in Paris? Use get_weather."}]
    r = client.chat.completions.create(model=model, messages=ask, tools=TOOLS, max_tokens=100)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)
    follow = [*ask, choice.message.model_dump(exclude_none=True),
              {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"}]
    r2 = client.chat.completions.create(model=model, messages=follow, tools=TOOLS, max_tokens=100)
    assert r2.choices[0].finish_reason == "stop"
    assert "18C and sunny" in r2.choices[0].message.content


@pytest.mark.parametrize("provider", list(MATRIX))
def test_streamed_tool_call_deltas(client: openai.OpenAI, provider: str) -> None:
    model, _ = MATRIX[provider]
    chunks = list(client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "get_weather please"}], tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, stream=True, max_tokens=100))
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert deltas[0].id and deltas[0].function.name == "get_weather" and deltas[0].type == "function"
    assert all(d.index == 0 for d in deltas) and all(d.id is None for d in deltas[1:])
    assert "city" in json.loads("".join(d.function.arguments or "" for d in deltas))
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_tool_choice_and_parallel_flag_reach_openai(client: openai.OpenAI, stack: Stack) -> None:
    client.chat.completions.create(model="openai/gpt-4o", messages=HI, tools=TOOLS, tool_choice="none",
                                   parallel_tool_calls=False)
    sent = stack.openai.requests[-1]
    assert sent["tool_choice"] == "none" and sent["parallel_tool_calls"] is False
    assert sent["tools"][0]["function"]["name"] == "get_weather"


def test_tool_choice_reaches_anthropic_in_its_own_shape(client: openai.OpenAI, stack: Stack) -> None:
    client.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=HI, tools=TOOLS,
                                   tool_choice="required", parallel_tool_calls=False, max_tokens=50)
    sent = stack.anthropic.requests[-1]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert sent["tools"][0] == {"name": "get_weather", "description": "Weather for a city",
                                "input_schema": TOOLS[0]["function"]["parameters"]}


def test_chat_completions_stream_helper(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(model="anthropic/claude-sonnet-4-5", messages=HI, max_tokens=50) as stream:
        kinds = {event.type for event in stream}
        final = stream.get_final_completion()
    assert "content.delta" in kinds
    assert final.choices[0].message.content == "Hello from fake Anthropic"
    with client.chat.completions.stream(model="openai/gpt-4o", messages=HI, tools=TOOLS) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.name == "get_weather"


async def test_async_client_plain_and_stream(stack: Stack) -> None:
    async with openai.AsyncOpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0) as client:
        r = await client.chat.completions.create(model="ollama/llama3", messages=HI)
        assert r.choices[0].message.content == "Hello from fake Ollama"
        stream = await client.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=HI,
                                                      max_tokens=50, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "Hello from fake Anthropic"
        async with client.chat.completions.stream(model="openai/gpt-4o", messages=HI) as helper:
            final = await helper.get_final_completion()
        assert final.choices[0].message.content == "Hello from fake OpenAI"


def test_task_route_falls_back_down_the_chain(client: openai.OpenAI, stack: Stack) -> None:
    stack.anthropic.fail_next(400)  # default chain: anthropic -> openai -> ollama -> simulated
    raw = client.chat.completions.with_raw_response.create(model="rhetor/default", messages=HI)
    assert raw.headers["x-rhetor-provider"] == "openai" and raw.parse().model == "gpt-5.4"  # relayed as received
    assert raw.headers["x-rhetor-fallback"] == "true"
    stack.anthropic.fail_next(400)
    r = client.chat.completions.create(model="rhetor", messages=HI, extra_headers={"x-rhetor-task": "chat"})
    assert r.model == "gpt-5.4-mini"  # the chat entry's second target, its answer relayed as received
