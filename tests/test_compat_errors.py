"""Errors through both fronts raise the SDKs' own classes, with each API's body and a faithful status; a failure
mid-stream is an error event in that API's format, never a silently truncated stream; upstream keys never leak."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.fakes.stack import UPSTREAM_KEYS, Stack, running_stack

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(Path(tmp_path_factory.mktemp("compat-errors")), breaker_threshold=1000) as s:
        yield s


@pytest.fixture(scope="module")
def oai(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def ant(stack: Stack) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=stack.url, api_key="unused", max_retries=0) as c:
        yield c


def test_unknown_model_is_not_found(oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    with pytest.raises(openai.NotFoundError) as o:
        oai.chat.completions.create(model="no-such-model", messages=HI)
    assert o.value.status_code == 404 and o.value.code == "model_not_found" and o.value.param == "model"
    with pytest.raises(anthropic.NotFoundError) as a:
        ant.messages.create(model="nosuch/thing", max_tokens=5, messages=HI)
    assert a.value.body["type"] == "error" and a.value.body["error"]["type"] == "not_found_error"


def test_upstream_rate_limit_is_a_rate_limit_error(oai: openai.OpenAI, ant: anthropic.Anthropic, stack: Stack) -> None:
    stack.openai.fail_next(429, n=3, retry_after=0)  # Rhetor retries twice itself, then reports the 429
    with pytest.raises(openai.RateLimitError) as o:
        oai.chat.completions.create(model="openai/gpt-4o", messages=HI)
    assert o.value.body["type"] == "rate_limit_error"
    assert len(stack.openai.requests) >= 3
    stack.anthropic.fail_next(429, n=3, retry_after=0)
    with pytest.raises(anthropic.RateLimitError):
        ant.messages.create(model="anthropic/claude-sonnet-4-5", max_tokens=5, messages=HI)
    stack.openai.fail_next(429, n=3, retry_after=0)
    with pytest.raises(anthropic.RateLimitError) as cross:  # OpenAI's 429 as Anthropic's error
        ant.messages.create(model="openai/gpt-4o", max_tokens=5, messages=HI)
    assert cross.value.body["error"]["type"] == "rate_limit_error"


def test_upstream_statuses_map_faithfully(oai: openai.OpenAI, ant: anthropic.Anthropic, stack: Stack) -> None:
    stack.anthropic.fail_next(529, n=3, retry_after=0)
    with pytest.raises(anthropic.OverloadedError):
        ant.messages.create(model="anthropic/claude-sonnet-4-5", max_tokens=5, messages=HI)
    stack.anthropic.fail_next(400)
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=HI)
    stack.openai.fail_next(404)
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="openai/gpt-9", messages=HI)
    stack.openai.fail_next(500, n=3)
    with pytest.raises(openai.InternalServerError) as err:
        oai.chat.completions.create(model="openai/gpt-4o", messages=HI)
    assert err.value.status_code == 500 and isinstance(err.value, openai.APIStatusError)


def test_upstream_key_never_leaks(oai: openai.OpenAI, stack: Stack) -> None:
    stack.openai.fail_next(401, message=f"Incorrect API key provided: {UPSTREAM_KEYS['openai']}")
    with pytest.raises(openai.InternalServerError) as err:  # Rhetor's upstream key, not the caller's: a 502
        oai.chat.completions.create(model="openai/gpt-4o", messages=HI)
    assert UPSTREAM_KEYS["openai"] not in str(err.value.body) and "[redacted]" in err.value.message
    assert err.value.status_code == 502 and err.value.response.headers["x-should-retry"] == "false"
    assert "- the upstream rejected Rhetor's credentials for provider openai (upstream 401)" in err.value.message


def test_unavailable_provider_is_503(make_settings: object, tmp_path: Path) -> None:
    from tests.conftest import running_rhetor, test_settings

    with running_rhetor(test_settings(tmp_path)) as url, \
            openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client:
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(model="openai/gpt-4o", messages=HI)
    assert err.value.status_code == 503 and "OPENAI_API_KEY not set" in err.value.message


def test_validation_errors_are_400_naming_the_field(oai: openai.OpenAI, ant: anthropic.Anthropic,
                                                    stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as o:
        oai.chat.completions.create(model="openai/gpt-4o", messages=HI, temperature=5)
    assert o.value.param == "temperature"
    with pytest.raises(anthropic.BadRequestError) as a:  # max_tokens is required by the Messages API
        ant.messages.create(model="openai/gpt-4o", messages=HI, max_tokens=5, extra_body={"max_tokens": None})
    assert "max_tokens" in a.value.message
    r = httpx.post(stack.url + "/v1/chat/completions", content=b"{not json", timeout=5)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(stack.url + "/v1/messages", content=b"", timeout=5)
    assert r.status_code == 400 and r.json()["type"] == "error"


def test_mid_stream_failure_is_an_openai_error_event(oai: openai.OpenAI, stack: Stack) -> None:
    stack.openai.cut_next(2)
    stream = oai.chat.completions.create(model="openai/gpt-4o", messages=HI, stream=True)
    got: list[str] = []
    with pytest.raises(openai.APIError) as err:
        for chunk in stream:
            got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == "Hello from"  # what arrived before the cut, then the error, not a quiet end
    assert "cut" in err.value.message
    raw = httpx.post(stack.url + "/v1/chat/completions", timeout=5, json={
        "model": "simulated/simulated-cut-2", "messages": HI, "stream": True})
    assert raw.text.rstrip().splitlines()[-1].startswith('data: {"error"')
    assert "[DONE]" not in raw.text


def test_mid_stream_failure_is_an_anthropic_error_event(ant: anthropic.Anthropic, stack: Stack) -> None:
    stack.anthropic.error_event_next(2)
    with pytest.raises(anthropic.APIStatusError) as err, \
            ant.messages.stream(model="anthropic/claude-sonnet-4-5", max_tokens=50, messages=HI) as stream:
        stream.get_final_message()
    assert err.value.body["error"]["type"] == "overloaded_error"
    stack.ollama.cut_next(1)
    raw = httpx.post(stack.url + "/v1/messages", timeout=5, json={
        "model": "ollama/llama3", "max_tokens": 20, "messages": HI, "stream": True})
    lines = raw.text.strip().splitlines()
    assert lines[-2] == "event: error" and '"type":"api_error"' in lines[-1]
    assert "message_stop" not in raw.text


def test_error_before_the_first_byte_is_a_status_not_a_stream(ant: anthropic.Anthropic, stack: Stack) -> None:
    stack.anthropic.fail_next(401)
    with pytest.raises(anthropic.InternalServerError) as err, \
            ant.messages.stream(model="anthropic/claude-sonnet-4-5", max_tokens=5, messages=HI) as stream:
        stream.get_final_message()
    assert err.value.status_code == 502 and "rejected Rhetor's credentials for provider anthropic" in err.value.message


def test_body_over_the_cap_is_413_for_both_sdks(tmp_path: Path) -> None:
    from tests.conftest import running_rhetor
    from tests.conftest import test_settings as settings_for

    big = [{"role": "user", "content": "x" * 5000}]
    with running_rhetor(settings_for(tmp_path, max_body_bytes=2000)) as url:
        with openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as o, \
                pytest.raises(openai.APIStatusError) as oerr:
            o.chat.completions.create(model="simulated/simulated-fast", messages=big)
        assert oerr.value.status_code == 413
        assert "exceeds 2000 bytes" in oerr.value.message and oerr.value.code == "payload_too_large"
        with anthropic.Anthropic(base_url=url, api_key="x", max_retries=0) as a, \
                pytest.raises(anthropic.APIStatusError) as aerr:
            a.messages.create(model="simulated/simulated-fast", max_tokens=5, messages=big)
        assert aerr.value.status_code == 413
        assert aerr.value.body["error"]["type"] == "payload_too_large"  # type: ignore[index]
