"""Streaming `n > 1` on the OpenAI front, through the official `openai` SDK against a real Rhetor and the fakes:
an OpenAI upstream takes `n` itself (the caller's body forwarded, its n choices relayed); Anthropic, Ollama and the
simulated provider get n concurrent streams merged into one chunk stream (each choice its index and finish_reason,
usage summed in the usage chunk); a branch that fails before its first event is retried like any stream; a failure
after commit ends the stream with the OpenAI error frame; n beyond the fan-out bound is a 400 naming `n`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from rhetor.api.openai.fanout import MAX_FANOUT
from tests.fakes.stack import MATRIX, Stack, running_stack

HI: list[Any] = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(Path(tmp_path_factory.mktemp("fanout"))) as s:
        yield s


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0) as c:
        yield c


def collect(client: openai.OpenAI, model: str, n: int, **extra: Any) -> tuple[dict[int, str], dict[int, str], Any]:
    """(text per choice index, finish_reason per index, the usage chunk's usage) of a streamed answer."""
    texts: dict[int, str] = {}
    finish: dict[int, str] = {}
    usage = None
    for chunk in client.chat.completions.create(model=model, messages=HI, n=n, stream=True,
                                                stream_options={"include_usage": True}, **extra):
        if chunk.usage is not None:
            assert chunk.choices == []
            usage = chunk.usage
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
            if c.finish_reason is not None:
                assert c.index not in finish  # one finish_reason per choice
                finish[c.index] = c.finish_reason
    return texts, finish, usage


def single_usage(client: openai.OpenAI, model: str) -> Any:
    return collect(client, model, 1)[2]


def test_openai_upstream_takes_n_itself(client: openai.OpenAI, stack: Stack) -> None:
    before = len(stack.openai.requests)
    texts, finish, usage = collect(client, MATRIX["openai"][0], 3)
    assert len(stack.openai.requests) == before + 1 and stack.openai.requests[-1]["n"] == 3  # forwarded, one call
    assert sorted(texts) == [0, 1, 2] and all(t.startswith(MATRIX["openai"][1]) for t in texts.values())
    assert finish == {0: "stop", 1: "stop", 2: "stop"}
    assert usage is not None and usage.completion_tokens > 0  # the upstream's own usage chunk


@pytest.mark.parametrize("provider", ["anthropic", "ollama", "simulated"])
def test_fan_out_merges_n_streams(client: openai.OpenAI, stack: Stack, provider: str) -> None:
    model, text = MATRIX[provider]
    one = single_usage(client, model)
    fake = getattr(stack, provider, None)
    before = len(fake.requests) if fake is not None else 0
    texts, finish, usage = collect(client, model, 3)
    assert sorted(texts) == [0, 1, 2] and all(t.startswith(text) for t in texts.values())
    assert finish == {0: "stop", 1: "stop", 2: "stop"}
    assert usage is not None and usage.prompt_tokens == 3 * one.prompt_tokens
    assert usage.completion_tokens == 3 * one.completion_tokens and usage.total_tokens == 3 * one.total_tokens
    if fake is not None:
        sent = fake.requests[before:]
        assert len(sent) == 3 and all("n" not in body for body in sent)


def test_fan_out_frames_are_well_formed(stack: Stack) -> None:
    """On the wire: role chunk per choice, every chunk one choice with its index, [DONE] last."""
    body = {"model": MATRIX["anthropic"][0], "messages": HI, "n": 2, "stream": True}
    with httpx.stream("POST", stack.url + "/v1/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200 and r.headers["x-rhetor-passthrough"] == "false"
        data = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(len(c["choices"]) == 1 and c["object"] == "chat.completion.chunk" for c in chunks)
    assert {c["choices"][0]["index"] for c in chunks} == {0, 1}
    roles = [c["choices"][0]["index"] for c in chunks if c["choices"][0]["delta"].get("role") == "assistant"]
    assert sorted(roles) == [0, 1] and len({c["id"] for c in chunks}) == 1


def test_a_branch_failing_before_its_first_event_is_retried(client: openai.OpenAI, stack: Stack) -> None:
    before = len(stack.anthropic.requests)
    stack.anthropic.delay_next(0)
    stack.anthropic.fail_next(529)  # the second branch's first attempt: overloaded, retried on the same target
    texts, finish, _ = collect(client, MATRIX["anthropic"][0], 3)
    assert sorted(texts) == [0, 1, 2] and finish == {0: "stop", 1: "stop", 2: "stop"}
    assert len(stack.anthropic.requests) == before + 4


def test_a_branch_that_cannot_open_fails_the_request_before_anything_is_sent(client: openai.OpenAI,
                                                                            stack: Stack) -> None:
    stack.anthropic.delay_next(0)
    stack.anthropic.fail_next(400)  # not retryable: the second branch cannot open
    with pytest.raises(openai.APIStatusError) as err:
        collect(client, MATRIX["anthropic"][0], 2)
    assert err.value.status_code == 400
    texts, _, _ = collect(client, MATRIX["anthropic"][0], 2)  # nothing left behind: the next request is whole
    assert sorted(texts) == [0, 1]


def test_a_failure_after_commit_is_the_openai_error_frame(client: openai.OpenAI, stack: Stack) -> None:
    stack.anthropic.error_event_next(after_chunks=1)  # the first branch, mid-stream
    body = {"model": MATRIX["anthropic"][0], "messages": HI, "n": 2, "stream": True}
    with httpx.stream("POST", stack.url + "/v1/chat/completions", json=body, timeout=30) as r:
        data = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert "[DONE]" not in data  # the stream ends on the error frame: the SDK raises, nothing silently truncated
    assert "Overloaded" in json.loads(data[-1])["error"]["message"]
    stack.anthropic.error_event_next(after_chunks=1)
    with pytest.raises(openai.APIError, match="Overloaded"):
        collect(client, MATRIX["anthropic"][0], 2)


def test_n_beyond_the_fan_out_bound_is_a_400_naming_n(client: openai.OpenAI, stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        collect(client, MATRIX["anthropic"][0], MAX_FANOUT + 1)
    assert err.value.body["param"] == "n"  # type: ignore[index]
    assert f"at most {MAX_FANOUT}" in err.value.message
    texts, _, _ = collect(client, MATRIX["openai"][0], MAX_FANOUT + 1)  # native n: not fanned out, not bounded
    assert len(texts) == MAX_FANOUT + 1
