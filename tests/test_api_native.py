"""The native API (tekton-llm-client contract) over real HTTP against a keyless Rhetor."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from rhetor.routing.config import TaskConfig

TEKTON_CLIENT_BODY = {
    "messages": [{"role": "user", "content": "hello"}], "context_id": "ergon", "provider_id": "simulated",
    "streaming": False, "options": {"temperature": 0.1, "fallback_provider": None, "fallback_model": None,
                                    "max_tokens": 50},
    "model_id": "simulated-standard", "system_prompt": "be brief",
}


def sse_frames(text: str) -> list[Any]:
    frames: list[Any] = []
    for line in text.splitlines():
        if line.startswith("data: "):
            payload = line[6:]
            frames.append(payload if payload == "[DONE]" else json.loads(payload))
    return frames


def test_health_is_fast_and_keyless(simulated_rhetor: str) -> None:
    r = httpx.get(f"{simulated_rhetor}/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy" and body["version"]
    assert body["providers"] == {"anthropic": False, "openai": False, "gemini": False, "ollama": False,
                                 "simulated": True}
    assert httpx.get(f"{simulated_rhetor}/api/v1/health").status_code == 200


def test_tekton_llm_client_body(simulated_rhetor: str) -> None:
    r = httpx.post(f"{simulated_rhetor}/api/v1/chat", json=TEKTON_CLIENT_BODY)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["content"].startswith('I received your message: "hello"')
    assert body["message"] == body["content"]
    assert body["provider"] == "simulated" and body["model"] == "simulated-standard"
    assert body["simulated"] is True and body["fallback"] is False
    assert body["context_id"] == "ergon" and body["finish_reason"] == "stop"
    assert body["usage"]["output_tokens"] > 0 and body["timestamp"]
    # a bare component id selects the component (its prompt comes first, the caller's "be brief" after it) but
    # no shared history: over HTTP it is stateless (rhetor.api.context_scope)
    assert 'The system prompt was: "# Ergon - Tekton AI Component' in body["content"]
    assert body["context_scope"] == "stateless"
    assert r.headers["x-request-id"] and float(r.headers["x-rhetor-overhead-ms"]) >= 0


def test_keyless_default_route_falls_back_to_simulated(simulated_rhetor: str) -> None:
    r = httpx.post(f"{simulated_rhetor}/api/v1/chat", json={"message": "hi"})
    body = r.json()
    assert r.status_code == 200
    assert body["simulated"] is True and body["fallback"] is True
    skipped = [a for a in body["attempts"] if a["outcome"] == "skipped"]
    assert {a["provider"] for a in skipped} >= {"anthropic"}
    assert all(a["error_type"] == "provider_unavailable" for a in skipped)


def test_stream_frames_and_done(simulated_rhetor: str) -> None:
    r = httpx.post(f"{simulated_rhetor}/api/v1/chat/stream",
                   json={"message": "stream me", "context_id": "telos:s1", "options": {"provider": "simulated"}})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    frames = sse_frames(r.text)
    assert frames[-1] == "[DONE]"
    final = frames[-2]
    assert final["done"] is True and final["chunk"] == "" and final["finish_reason"] == "stop"
    assert final["usage"]["output_tokens"] > 0 and final["simulated"] is True
    chunks = frames[:-2]
    assert chunks and all(f["done"] is False and f["context_id"] == "telos:s1" for f in chunks)
    text = "".join(f["chunk"] for f in chunks)
    assert text.startswith('I received your message: "stream me"')
    assert "Telos - Tekton AI Component" in text  # the component prompt was applied (first 50 chars)


def test_chat_with_streaming_flag_returns_sse(simulated_rhetor: str) -> None:
    r = httpx.post(f"{simulated_rhetor}/api/v1/chat", json={**TEKTON_CLIENT_BODY, "streaming": True})
    assert sse_frames(r.text)[-1] == "[DONE]"


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 422, "malformed JSON"),
        (b"", 422, "empty"),
        (b'{"context_id": "x"}', 422, "exactly one of 'message' or 'messages'"),
        (b'{"messages": [{"role": "wizard", "content": "x"}]}', 422, "messages.0.role"),
        (b'{"messages": [{"role": "user"}]}', 422, "messages.0.content"),
        (b'{"message": "x", "context_id": ""}', 422, "context_id"),
        (b'{"message": "x", "provider_id": "nosuch"}', 400, "valid providers: anthropic"),
        (b'{"message": "x", "provider_id": "simulated", "model_id": "nosuch"}', 400, "simulated-standard"),
        (b'{"message": "x", "options": {"temperature": "hot"}}', 400, "options.temperature"),
    ],
)
def test_bad_input(simulated_rhetor: str, body: bytes, status: int, needle: str) -> None:
    r = httpx.post(f"{simulated_rhetor}/api/v1/chat", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]
    assert "Traceback" not in r.text


def test_body_too_large(make_settings: Callable[..., Any], rhetor: Any) -> None:
    with rhetor(make_settings(max_body_bytes=1000)) as url:
        r = httpx.post(f"{url}/api/v1/chat", json={"message": "x" * 2000})
        assert r.status_code == 413
        assert r.json()["error"]["type"] == "payload_too_large"


def test_all_targets_failed_is_502_with_attempts(make_settings: Callable[..., Any], rhetor: Any) -> None:
    config = TaskConfig.model_validate({"default": {"targets": [
        {"provider": "simulated", "model": "simulated-fail-500", "retries": 1},
        {"provider": "simulated", "model": "simulated-fail-401"}], "simulated_fallback": False}})
    with rhetor(make_settings(), config) as url:
        r = httpx.post(f"{url}/api/v1/chat", json={"message": "x"})
        assert r.status_code == 502
        err = r.json()["error"]
        assert err["type"] == "all_targets_failed"
        assert [(a["model"], a["status"]) for a in err["attempts"]] == [
            ("simulated-fail-500", 500), ("simulated-fail-500", 500), ("simulated-fail-401", 401)]
        s = httpx.post(f"{url}/api/v1/chat/stream", json={"message": "x"})
        assert s.status_code == 502 and s.json()["error"]["type"] == "all_targets_failed"


def test_providers_and_models(simulated_rhetor: str) -> None:
    body = httpx.get(f"{simulated_rhetor}/api/v1/providers").json()
    assert body["default_provider"] == "simulated" and body["default_model"] == "simulated-standard"
    assert body["current_provider"] == "simulated"
    sim = body["providers"]["simulated"]
    assert sim["available"] is True and sim["default_model"] == "simulated-standard"
    assert {m["id"] for m in sim["models"]} >= {"simulated-fast", "simulated-standard", "simulated-advanced"}
    assert body["providers"]["anthropic"]["reason"]
    assert body["providers"]["anthropic"]["default_model"]
    models = httpx.get(f"{simulated_rhetor}/api/v1/models").json()["models"]
    assert {"id": "simulated/simulated-fast", "provider": "simulated", "model": "simulated-fast",
            "available": True} in models
