"""The fallback matrix through a real Rhetor and a real fake Anthropic upstream: retries honouring
Retry-After, 529, 500, connection refused, read timeout, cuts before and after the first chunk, the
mid-stream overloaded event, non-retryable statuses, and the circuit breaker."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from rhetor.routing.config import TaskConfig
from tests.fakes.anthropic import FakeAnthropic, running_fake_anthropic
from tests.fakes.server import free_port

MODEL = "claude-sonnet-4-5"


def config(retries: int = 2, timeout_s: float | None = None) -> TaskConfig:
    target: dict[str, Any] = {"provider": "anthropic", "model": MODEL, "retries": retries}
    if timeout_s:
        target["timeout_s"] = timeout_s
    return TaskConfig.model_validate({"default": {"targets": [target, {"provider": "simulated",
                                                                       "model": "simulated-fast"}]}})


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with running_fake_anthropic() as f:
        yield f


@pytest.fixture
def gateway_for(make_settings: Callable[..., Any], rhetor: Any, fake: FakeAnthropic) -> Callable[..., Any]:
    def start(cfg: TaskConfig | None = None, **overrides: Any) -> Any:
        settings = make_settings(anthropic_api_key="test-key", anthropic_base_url=fake.base_url, **overrides)
        return rhetor(settings, cfg or config())
    return start


def chat(url: str) -> dict[str, Any]:
    r = httpx.post(f"{url}/api/v1/chat", json={"message": "hi"}, timeout=30)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def stream(url: str) -> list[dict[str, Any]]:
    r = httpx.post(f"{url}/api/v1/chat/stream", json={"message": "hi"}, timeout=30)
    assert r.status_code == 200, r.text
    return [json.loads(line[6:]) for line in r.text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


def outcomes(body: dict[str, Any]) -> list[tuple[str, str, int | None]]:
    return [(a["provider"], a["outcome"], a.get("status")) for a in body["attempts"]]


def test_429_honours_retry_after_then_succeeds(gateway_for: Callable[..., Any], fake: FakeAnthropic) -> None:
    fake.fail_next(429, retry_after=0.4)
    with gateway_for() as url:
        started = time.monotonic()
        body = chat(url)
        assert time.monotonic() - started >= 0.4
    assert body["provider"] == "anthropic" and body["content"] == fake.reply_text
    assert body["fallback"] is False and body["simulated"] is False
    assert outcomes(body) == [("anthropic", "error", 429), ("anthropic", "ok", None)]


def test_retry_after_is_capped(gateway_for: Callable[..., Any], fake: FakeAnthropic) -> None:
    fake.fail_next(429, retry_after=30)
    with gateway_for(max_retry_after_s=0.1) as url:
        started = time.monotonic()
        assert chat(url)["provider"] == "anthropic"
        assert time.monotonic() - started < 5


def test_529_overloaded_retried(gateway_for: Callable[..., Any], fake: FakeAnthropic) -> None:
    fake.fail_next(529, n=2)
    with gateway_for() as url:
        body = chat(url)
    assert outcomes(body) == [("anthropic", "error", 529)] * 2 + [("anthropic", "ok", None)]


def test_500_exhausted_falls_back(gateway_for: Callable[..., Any], fake: FakeAnthropic) -> None:
    fake.fail_next(500, n=3)
    with gateway_for() as url:
        body = chat(url)
    assert body["provider"] == "simulated" and body["fallback"] is True and body["simulated"] is True
    assert outcomes(body) == [("anthropic", "error", 500)] * 3 + [("simulated", "ok", None)]


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_non_retryable_not_retried(gateway_for: Callable[..., Any], fake: FakeAnthropic, status: int) -> None:
    fake.fail_next(status)
    with gateway_for() as url:
        body = chat(url)
    assert outcomes(body) == [("anthropic", "error", status), ("simulated", "ok", None)]
    assert "test-key" not in json.dumps(body)


def test_connection_refused_falls_back(make_settings: Callable[..., Any], rhetor: Any) -> None:
    settings = make_settings(anthropic_api_key="test-key", anthropic_base_url=f"http://127.0.0.1:{free_port()}")
    with rhetor(settings, config(retries=1)) as url:
        body = chat(url)
    assert [(a["provider"], a.get("error_type")) for a in body["attempts"]] == [
        ("anthropic", "upstream_unreachable"), ("anthropic", "upstream_unreachable"), ("simulated", None)]


def test_read_timeout_falls_back(gateway_for: Callable[..., Any], fake: FakeAnthropic) -> None:
    fake.delay_next(3, n=2)
    with gateway_for(config(retries=1, timeout_s=0.3)) as url:
        body = chat(url)
    assert body["provider"] == "simulated"
    assert [a.get("error_type") for a in body["attempts"]][:2] == ["upstream_timeout"] * 2


def test_stream_cut_before_first_chunk_is_retried(gateway_for: Callable[..., Any], fake: FakeAnthropic) -> None:
    fake.cut_next(0)
    with gateway_for() as url:
        frames = stream(url)
    assert frames[-1]["done"] is True and frames[-1]["finish_reason"] == "stop"
    assert frames[-1]["provider"] == "anthropic"
    assert "".join(f["chunk"] for f in frames) == fake.reply_text
    assert [a["outcome"] for a in frames[-1]["attempts"]] == ["error", "ok"]


def test_stream_cut_after_first_chunk_is_error_event(gateway_for: Callable[..., Any], fake: FakeAnthropic) -> None:
    fake.cut_next(2)
    with gateway_for() as url:
        frames = stream(url)
    assert all(f["provider"] == "anthropic" for f in frames)  # committed: no switch to another provider
    assert sum(1 for f in frames if f["chunk"]) == 2
    last = frames[-1]
    assert last["done"] is True and last["finish_reason"] == "error"
    assert last["error_type"] == "upstream_protocol_error"


def test_midstream_overloaded_event(gateway_for: Callable[..., Any], fake: FakeAnthropic) -> None:
    fake.error_event_next(1)
    with gateway_for() as url:
        frames = stream(url)
    assert frames[-1]["finish_reason"] == "error" and "Overloaded" in frames[-1]["error"]
    assert frames[-1]["error_type"] == "upstream_error"


def test_breaker_opens_and_shows(gateway_for: Callable[..., Any], fake: FakeAnthropic) -> None:
    fake.fail_next(500, n=4)
    with gateway_for(config(retries=1), breaker_threshold=2, breaker_cooldown_s=60) as url:
        chat(url)  # two failures: the breaker opens
        body = chat(url)
        assert body["attempts"][0]["outcome"] == "skipped"
        assert body["attempts"][0]["error_type"] == "circuit_open"
        assert len(fake.requests) == 2  # the second request never reached the upstream
        breakers = httpx.get(f"{url}/api/v1/providers").json()["providers"]["anthropic"]["breakers"]
        assert breakers[f"anthropic/{MODEL}"]["state"] == "open"


def test_breaker_half_opens_after_cooldown(gateway_for: Callable[..., Any], fake: FakeAnthropic) -> None:
    fake.fail_next(500, n=2)
    with gateway_for(config(retries=1), breaker_threshold=2, breaker_cooldown_s=0.3) as url:
        chat(url)
        time.sleep(0.4)
        body = chat(url)  # the half-open trial succeeds and closes the breaker
        assert outcomes(body) == [("anthropic", "ok", None)]
        breakers = httpx.get(f"{url}/api/v1/providers").json()["providers"]["anthropic"]["breakers"]
        assert breakers.get(f"anthropic/{MODEL}", {"state": "closed"})["state"] == "closed"
