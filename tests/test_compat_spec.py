"""Spec check: every chunk Rhetor streams through either front, for every provider, tools included, validates
against the official SDKs' own types and survives a round trip through them unchanged (no field coerced,
renamed or dropped); OpenAI streams end with `data: [DONE]`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from anthropic.types import Message as AnthropicMessage
from anthropic.types import RawMessageStreamEvent
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter

from tests.fakes.stack import MATRIX, Stack, running_stack

EVENT = TypeAdapter(RawMessageStreamEvent)
OPENAI_TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]
ANTHROPIC_TOOLS = [{"name": "lookup", "input_schema": OPENAI_TOOLS[0]["function"]["parameters"]}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(Path(tmp_path_factory.mktemp("compat-spec"))) as s:
        yield s


def _same(parsed: Any, data: dict[str, Any]) -> None:
    assert parsed.model_dump(mode="json", exclude_unset=True) == data


def _sse(text: str) -> list[tuple[str | None, str]]:
    out: list[tuple[str | None, str]] = []
    for block in text.strip().split("\n\n"):
        lines = block.split("\n")
        event = next((line[7:] for line in lines if line.startswith("event: ")), None)
        out.append((event, "\n".join(line[6:] for line in lines if line.startswith("data: "))))
    return out


@pytest.mark.parametrize("tools", [False, True])
@pytest.mark.parametrize("provider", list(MATRIX))
def test_openai_chunks_validate(stack: Stack, provider: str, tools: bool) -> None:
    body: dict[str, Any] = {"model": MATRIX[provider][0], "stream": True, "stream_options": {"include_usage": True},
                            "messages": [{"role": "user", "content": "lookup something"}], "max_tokens": 100}
    if tools:
        body.update(tools=OPENAI_TOOLS, tool_choice="required")
    r = httpx.post(stack.url + "/v1/chat/completions", json=body, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    frames = _sse(r.text)
    assert frames[-1] == (None, "[DONE]")
    for _, data in frames[:-1]:
        raw = orjson.loads(data)
        _same(ChatCompletionChunk.model_validate(raw), raw)
    body["stream"] = False
    body.pop("stream_options")
    raw = httpx.post(stack.url + "/v1/chat/completions", json=body, timeout=10).json()
    _same(ChatCompletion.model_validate(raw), raw)


@pytest.mark.parametrize("tools", [False, True])
@pytest.mark.parametrize("provider", list(MATRIX))
def test_anthropic_events_validate(stack: Stack, provider: str, tools: bool) -> None:
    body: dict[str, Any] = {"model": MATRIX[provider][0], "stream": True, "max_tokens": 100,
                            "messages": [{"role": "user", "content": "lookup something"}]}
    if tools:
        body.update(tools=ANTHROPIC_TOOLS, tool_choice={"type": "any"})
    r = httpx.post(stack.url + "/v1/messages", json=body, timeout=10)
    assert r.status_code == 200
    frames = _sse(r.text)
    kinds = [event for event, _ in frames]
    # Anthropic itself is relayed as received (its own order: message_start, content_block_start, ping, ...)
    assert kinds[0] == "message_start" and "ping" in kinds and kinds[-2:] == ["message_delta", "message_stop"]
    assert provider == "anthropic" or kinds[1] == "ping"
    for event, data in frames:
        raw = orjson.loads(data)
        assert raw["type"] == event
        if event != "ping":
            _same(EVENT.validate_python(raw), raw)
    body["stream"] = False
    raw = httpx.post(stack.url + "/v1/messages", json=body, timeout=10).json()
    _same(AnthropicMessage.model_validate(raw), raw)
