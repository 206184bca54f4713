"""The hand-checked fast paths for common small bodies (OpenAI, Anthropic, native chat, request options) answer
exactly what the full pydantic validation answers, and hand every other body to it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from rhetor.api.anthropic.messages import MessagesBody
from rhetor.api.anthropic.messages import quick_messages as anthropic_quick
from rhetor.api.anthropic.messages import to_messages as anthropic_messages
from rhetor.api.native.schemas import ChatBody, quick_input
from rhetor.api.openai.chat import ChatCompletionBody, quick_messages, to_messages
from rhetor.errors import InvalidRequestError
from rhetor.routing.options import RequestOptions, request_options

OPENAI: list[Any] = [
    {"model": "openai/gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]},
    {"model": "m", "messages": [{"role": "system", "content": "be brief"}, {"role": "developer", "content": "x"},
                                {"role": "user", "content": "hi"}, {"role": "assistant", "content": ""},
                                {"role": "user", "content": "again"}], "stream": True},
    {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": False},
    # each of these takes the full validation
    {"model": "m", "messages": []},
    {"model": "m", "messages": [{"role": "tool", "content": "x"}]},
    {"model": "m", "messages": [{"role": "user", "content": None}]},
    {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
    {"model": "m", "messages": [{"role": "user", "content": "hi", "name": "ann"}]},
    {"model": "m", "messages": [{"role": "robot", "content": "hi"}]},
    {"model": "m", "messages": [{"role": ["user"], "content": "hi"}]},
    {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"},
    {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": None},
    {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5},
    {"model": 5, "messages": [{"role": "user", "content": "hi"}]},
    {"messages": [{"role": "user", "content": "hi"}]},
    {"model": "m", "messages": ["hi"]},
    {"model": "m", "messages": {"role": "user"}},
    ["not", "an", "object"],
]


@pytest.mark.parametrize("raw", OPENAI)
def test_openai_quick_path_agrees_with_pydantic(raw: Any) -> None:
    quick = quick_messages(raw)
    try:
        full = to_messages(ChatCompletionBody.model_validate(raw), [])
    except (ValidationError, InvalidRequestError):
        assert quick is None
        return
    assert quick is None or quick == full
    if quick is not None:
        assert ChatCompletionBody.model_validate(raw).stream == raw.get("stream", False)


def test_openai_common_bodies_take_the_quick_path() -> None:
    assert quick_messages(OPENAI[0]) is not None and quick_messages(OPENAI[1]) is not None


ANTHROPIC: list[Any] = [
    {"model": "anthropic/claude-sonnet-5-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]},
    {"model": "m", "max_tokens": 1, "system": "be brief", "stream": True,
     "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                  {"role": "user", "content": "again"}]},
    {"model": "m", "max_tokens": 8, "system": "", "messages": [{"role": "user", "content": ""}]},
    # each of these takes the full validation
    {"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "hi"}]},
    {"model": "m", "max_tokens": 64.0, "messages": [{"role": "user", "content": "hi"}]},
    {"model": "m", "max_tokens": True, "messages": [{"role": "user", "content": "hi"}]},
    {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    {"model": "m", "max_tokens": 8, "messages": [{"role": "system", "content": "hi"}]},
    {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
    {"model": "m", "max_tokens": 8, "system": [{"type": "text", "text": "s"}],
     "messages": [{"role": "user", "content": "hi"}]},
    {"model": "m", "max_tokens": 8, "temperature": 0.5, "messages": [{"role": "user", "content": "hi"}]},
    {"model": "m", "max_tokens": 8, "messages": []},
    {"model": "m", "max_tokens": 8, "stream": 1, "messages": [{"role": "user", "content": "hi"}]},
]


@pytest.mark.parametrize("raw", ANTHROPIC)
def test_anthropic_quick_path_agrees_with_pydantic(raw: Any) -> None:
    quick = anthropic_quick(raw)
    try:
        body = MessagesBody.model_validate(raw)
        full = anthropic_messages(body, [])
    except (ValidationError, InvalidRequestError):
        assert quick is None
        return
    assert quick is None or quick == full
    if quick is not None:
        assert body.system == raw.get("system") and body.stream == raw.get("stream", False)
        assert body.max_tokens == raw["max_tokens"]


def test_anthropic_common_bodies_take_the_quick_path() -> None:
    assert anthropic_quick(ANTHROPIC[0]) is not None and anthropic_quick(ANTHROPIC[1]) is not None


NATIVE: list[Any] = [
    {"message": "hi"},
    {"message": "hi", "streaming": True, "task_type": "chat", "component": "ergon", "provider_id": "openai",
     "model_id": "gpt-5.4-mini", "system_prompt": "be brief"},
    {"message": "hi", "component": None},
    # each of these takes the full validation
    {"message": None},
    {"message": 5},
    {"message": "hi", "streaming": "true"},
    {"message": "hi", "task_type": 3},
    {"message": "hi", "context_id": "ergon:1"},
    {"message": "hi", "model": "openai/gpt-5.4-mini"},
    {"message": "hi", "options": {"temperature": 0.2}},
    {"messages": [{"role": "user", "content": "hi"}]},
    {"message": "hi", "messages": [{"role": "user", "content": "hi"}]},
    {},
]


@pytest.mark.parametrize("raw", NATIVE)
def test_native_quick_path_agrees_with_pydantic(raw: Any) -> None:
    quick = quick_input(raw)
    try:
        body = ChatBody.model_validate(raw)
    except ValidationError:
        assert quick is None
        return
    if quick is not None:
        inp, streaming = quick
        full = body.to_input()
        full.started = inp.started
        assert (inp, streaming) == (full, body.streaming)


def test_native_common_bodies_take_the_quick_path() -> None:
    assert quick_input(NATIVE[0]) is not None and quick_input(NATIVE[1]) is not None


OPTIONS: list[Any] = [
    {}, {"max_tokens": 64}, {"temperature": 0.0, "top_p": 1.0}, {"max_tokens": None, "custom": [1]},
    {"temperature": 2.0, "max_tokens": 2**31 - 1}, {"max_tokens": 0}, {"max_tokens": 2**31}, {"max_tokens": 64.0},
    {"max_tokens": True}, {"temperature": 1}, {"temperature": 2.5}, {"top_p": 1.5}, {"top_p": float("nan")},
    {"stop": "x"}, {"seed": 1}, {"provider": "openai"}, {"temperature": "0.5"},
]


@pytest.mark.parametrize("raw", OPTIONS)
def test_request_options_fast_check_agrees_with_pydantic(raw: dict[str, Any]) -> None:
    try:
        parsed = RequestOptions.model_validate(dict(raw))
    except ValidationError:
        with pytest.raises(InvalidRequestError):
            request_options(raw)
        return
    expected = {k: getattr(parsed, k) if k in RequestOptions.model_fields else v for k, v in raw.items()}
    got = request_options(raw)
    assert got == expected and [type(v) for v in got.values()] == [type(v) for v in expected.values()]
