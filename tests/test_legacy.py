"""The LLM Adapter shim over HTTP: legacy shapes, POST /provider (persisted), legacy SSE, errors, aliases."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from rhetor.settings import Settings


def sse_events(r: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    events, name = [], None
    for line in r.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            assert line != "data: [DONE]", "the legacy stream has no [DONE] sentinel"
            events.append((name or "", json.loads(line[6:])))
    return events


def test_message_shape_and_component_prompt(simulated_rhetor: str) -> None:
    r = httpx.post(f"{simulated_rhetor}/message", json={"message": "hi"})
    body = r.json()
    assert r.status_code == 200 and body["context"] == "default" and body["finished"] is True
    assert {"message", "model", "provider", "context", "finished", "timestamp"} <= set(body)
    assert body["message"].startswith('I received your message: "hi"') and body["simulated"] is True
    ergon = httpx.post(f"{simulated_rhetor}/message", json={"message": "plan", "context_id": "ergon"}).json()
    assert "Ergon - Tekton AI Component" in ergon["message"]  # the bare adapter id picks Ergon's prompt
    agora = httpx.post(f"{simulated_rhetor}/message", json={"message": "x", "context_id": "agora"}).json()
    assert "You are Agora" in agora["message"]
    # a shared id over HTTP picks the component but keeps no history (rhetor.api.context_scope) ...
    assert ergon["context"] == "ergon" and ergon["context_scope"] == "stateless"
    assert httpx.get(f"{simulated_rhetor}/api/v1/contexts/ergon").status_code == 404
    # ... while `comp:session` is the caller's own persistent conversation
    httpx.post(f"{simulated_rhetor}/message", json={"message": "plan", "context_id": "ergon:plan-1"})
    stored = httpx.get(f"{simulated_rhetor}/api/v1/contexts/ergon:plan-1").json()
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]


def test_chat_route_and_validation(simulated_rhetor: str) -> None:
    r = httpx.post(f"{simulated_rhetor}/chat", json={"messages": [{"role": "user", "content": "a"},
                                                                   {"role": "assistant", "content": "b"},
                                                                   {"role": "user", "content": "c"}],
                                                     "context_id": "telos:chat"})
    assert r.status_code == 200 and r.json()["context"] == "telos:chat" and r.json()["message"]
    missing = httpx.post(f"{simulated_rhetor}/message", json={"context_id": "x"})
    assert missing.status_code == 422 and missing.json()["error"]["param"] == "message"
    assert httpx.post(f"{simulated_rhetor}/chat", json={"message": "x"}).status_code == 422
    bad = httpx.post(f"{simulated_rhetor}/message", json={"message": "x", "options": {"provider": "nosuch"}})
    assert bad.status_code == 400 and "valid providers" in bad.json()["error"]


def test_provider_failure_is_200_with_error(simulated_rhetor: str) -> None:
    r = httpx.post(f"{simulated_rhetor}/message", json={"message": "x", "context_id": "f",
                                                        "options": {"provider": "simulated",
                                                                    "model": "simulated-fail-400"}})
    assert r.status_code == 200
    assert set(r.json()) >= {"error", "context", "timestamp"} and r.json()["context"] == "f"
    with httpx.stream("POST", f"{simulated_rhetor}/stream", json={
            "message": "x", "options": {"provider": "simulated", "model": "simulated-fail-400"}}) as s:
        events = sse_events(s)
    assert len(events) == 1 and events[0][1]["done"] is True and events[0][1]["error"]


def test_stream_is_legacy_sse(simulated_rhetor: str) -> None:
    with httpx.stream("POST", f"{simulated_rhetor}/stream", json={"message": "stream me", "context_id": "s"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    assert all(name == "message" for name, _ in events)
    assert all({"chunk", "context", "model", "provider", "timestamp", "done"} <= set(d) for _, d in events)
    assert [d["done"] for _, d in events[:-1]] == [False] * (len(events) - 1) and events[-1][1]["done"] is True
    assert "".join(d["chunk"] for _, d in events).startswith('I received your message: "stream me"')
    with httpx.stream("POST", f"{simulated_rhetor}/message", json={"message": "m", "streaming": True}) as r:
        assert sse_events(r)[-1][1]["done"] is True


def test_set_provider_persists(make_settings: Callable[..., Settings], rhetor: Any) -> None:
    settings = make_settings()
    with rhetor(settings) as url, httpx.Client(base_url=url) as c:
        before = c.get("/providers").json()
        assert before["current_provider"] == "simulated" and before["providers"]["anthropic"]["default_model"]
        assert c.post("/provider", json={"provider_id": "nosuch"}).status_code == 400
        bad_model = c.post("/api/provider", json={"provider_id": "simulated", "model_id": "nope"})
        assert bad_model.status_code == 400 and "valid models" in bad_model.json()["error"]
        ok = c.post("/api/provider", json={"provider_id": "simulated", "model_id": "simulated-fast"}).json()
        assert ok == {"success": True, "provider": "simulated", "model": "simulated-fast"}
        assert c.post("/message", json={"message": "x"}).json()["model"] == "simulated-fast"
        claude = c.post("/provider", json={"provider_id": "claude"}).json()
        assert claude["provider"] == "anthropic"
        c.post("/provider", json={"provider_id": "simulated", "model_id": "simulated-advanced"})
    with rhetor(settings) as url:  # a restart keeps the choice
        after = httpx.get(f"{url}/api/providers").json()
        assert (after["current_provider"], after["current_model"]) == ("simulated", "simulated-advanced")


def test_generate_aliases(simulated_rhetor: str) -> None:
    body = {"model": "simulated-fast", "messages": [{"role": "user", "content": "gen"}], "temperature": 0.7,
            "max_tokens": 100}
    r = httpx.post(f"{simulated_rhetor}/api/v1/generate", json=body).json()
    assert r["content"].startswith("I received your message") and r["model"] == "simulated-fast" and r["usage"]
    with httpx.stream("POST", f"{simulated_rhetor}/api/v1/generate_stream", json=body) as s:
        lines = [line[6:] for line in s.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]" and json.loads(lines[-2])["done"] is True
    models = httpx.get(f"{simulated_rhetor}/api/v1/models").json()
    assert any(m["id"] == "simulated/simulated-fast" for m in models["models"])
    assert httpx.post(f"{simulated_rhetor}/api/v1/generate", json={"model": "x"}).status_code == 422
