"""Semantic recall for the Responses API: a conversation continued by `previous_response_id` that overflows the
model's window sends what native contexts would (Memory.window: the relevant old turn + the recent tail), rebuilt
from the stored items, not the whole stored history; a function call and its output stay together. Through the
official `openai` SDK against a real Rhetor and the fake OpenAI upstream recording what it received."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from rhetor.catalog import load_catalog
from tests.fakes.stack import Stack, running_stack
from tests.test_retrieval import FILLER as SHORT
from tests.test_retrieval import OLD, QUESTION

# long enough that the seeded conversation overflows the smallest room Rhetor ever gives (MIN_BUDGET_TOKENS)
PAD = " Tell me in a few words, as you did before, without any detail at all. Short is fine; one line."
FILLER = [(text + PAD, reply) for text, reply in SHORT]

MODEL = "openai/gpt-4o-mini"
TOOLS: list[Any] = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
                     "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                    "required": ["city"]}}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(Path(tmp_path_factory.mktemp("recall")), index_interval_s=0.1) as s:
        yield s


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0) as c:
        yield c


def tight() -> int:
    """max_output_tokens leaving ~300 prompt tokens for gpt-4o-mini: the seeded conversation cannot all fit."""
    window = load_catalog().context_window("openai", "gpt-4o-mini")
    return window - int(window * 0.05) - 300


def drained(stack: Stack) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = httpx.get(f"{stack.url}/api/v1/memory/status").json()
        if status["backlog"] == 0 and status["indexed"] == status["embedded"]:
            return
        time.sleep(0.05)


def seed(client: openai.OpenAI) -> str:
    previous = None
    for text, _ in [OLD, *FILLER]:
        previous = client.responses.create(model=MODEL, input=text, previous_response_id=previous).id
    assert previous is not None
    return previous


def sent_texts(stack: Stack) -> list[str]:
    return [m.get("content") or "" for m in stack.openai.requests[-1]["messages"] if m["role"] != "system"]


def test_an_overflowing_conversation_sends_the_recalled_turn_and_the_tail(client: openai.OpenAI,
                                                                          stack: Stack) -> None:
    last = seed(client)
    drained(stack)
    raw = client.responses.with_raw_response.create(model=MODEL, input=QUESTION, previous_response_id=last,
                                                    max_output_tokens=tight())
    assert raw.headers["x-rhetor-retrieval"] == "semantic"
    sent = sent_texts(stack)
    assert sent[0] == OLD[0] and sent[-1] == QUESTION  # the relevant old turn first, the new input last
    assert FILLER[-1][0] in sent  # the most recent turn is kept
    assert FILLER[0][0] not in sent  # an old irrelevant turn is not
    assert len(sent) < 2 * (len(FILLER) + 1) + 1  # not everything
    # the conversation is whole in the store, and goes on from the new response
    r = raw.parse()
    follow = client.responses.create(model=MODEL, input="thanks", previous_response_id=r.id)
    assert follow.output_text and len(sent_texts(stack)) == 2 * (len(FILLER) + 2) + 1


def test_a_conversation_that_fits_is_sent_whole_without_retrieval(client: openai.OpenAI, stack: Stack) -> None:
    last = seed(client)
    raw = client.responses.with_raw_response.create(model=MODEL, input=QUESTION, previous_response_id=last)
    assert "x-rhetor-retrieval" not in raw.headers
    assert len(sent_texts(stack)) == 2 * (len(FILLER) + 1) + 1


def test_a_function_call_and_its_output_are_sent_together(client: openai.OpenAI, stack: Stack) -> None:
    last = seed(client)
    drained(stack)
    called = client.responses.create(model=MODEL, input="What is the weather in Paris?", tools=TOOLS,
                                     previous_response_id=last)
    call = next(item for item in called.output if item.type == "function_call")
    client.responses.create(model=MODEL, previous_response_id=called.id, tools=TOOLS, max_output_tokens=tight(),
                            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18C, sunny"}])
    messages = [m for m in stack.openai.requests[-1]["messages"] if m["role"] != "system"]
    assert messages[-1] == {"role": "tool", "tool_call_id": call.call_id, "content": "18C, sunny"}
    calling = messages[-2]
    assert calling["role"] == "assistant" and calling["tool_calls"][0]["id"] == call.call_id
    assert messages[-3] == {"role": "user", "content": "What is the weather in Paris?"}
    ids = [c["id"] for m in messages for c in m.get("tool_calls") or []]
    answered = [m["tool_call_id"] for m in messages if m["role"] == "tool"]
    assert ids == answered  # no call without its output, no output without its call
