"""Tekton's September 2025 `shared/rhetor_client.py` (contracts §8) and the history rules for bare component ids
(issue items 9 and 11), against a real Rhetor on loopback; the router's bare-model rule without a network."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from rhetor.routing.config import load_config
from rhetor.routing.names import provider_for_model
from rhetor.routing.router import route
from tests.fakes.stack import running_stack

DEFAULTS = {"anthropic": "claude-sonnet-5-5", "openai": "gpt-5.4", "ollama": "llama3", "gemini": "gemini-3.8-flash",
            "simulated": "simulated-standard"}


@pytest.mark.parametrize(("model", "provider"), [
    ("gpt-4o-mini", "openai"), ("o3-mini", "openai"), ("claude-3-5-haiku-latest", "anthropic"),
    ("gemini-3.8-flash", "gemini"), ("gemma3:4b", "ollama"), ("llama3", "ollama"), ("qwen2.5:7b", "ollama"),
    ("gpt-oss:20b", "ollama"), ("simulated-fast", "simulated"),
    ("my-finetune", None),
])
def test_bare_model_names_name_their_provider(model: str, provider: str | None) -> None:
    assert provider_for_model(model) == provider


def test_bare_model_id_runs_on_the_provider_that_serves_it() -> None:
    config = load_config()
    code = route(config, defaults=DEFAULTS, task_type="code", model_id="gpt-4o-mini")
    assert (code.targets[0].provider, code.targets[0].model) == ("openai", "gpt-4o-mini")  # was anthropic/gpt-4o-mini
    assert code.key == "code" and code.options["temperature"] == 0.2  # the task's entry still applies
    assert [(t.provider, t.model) for t in code.targets[1:]] == [("openai", "gpt-5.4"), ("simulated",
                                                                                      "simulated-standard")]
    local = route(config, defaults=DEFAULTS, component="metis", task_type="reasoning", model_id="llama3")
    assert local.targets[0].provider == "ollama"
    prefixed = route(config, defaults=DEFAULTS, model_id="claude/claude-3-5-haiku-latest")
    assert (prefixed.targets[0].provider, prefixed.targets[0].model) == ("anthropic", "claude-3-5-haiku-latest")
    unknown = route(config, defaults=DEFAULTS, task_type="chat", model_id="my-finetune")
    assert unknown.targets[0].provider == "anthropic"  # a name that says nothing keeps the route's provider
    pinned = route(config, defaults=DEFAULTS, provider_id="openai", model_id="llama3")
    assert pinned.targets[0].provider == "openai"  # an explicit provider always wins


# -- the 2025 rhetor_client over HTTP (contracts §8) -------------------------------------------------------------

def assigned_model(table: dict[str, Any], component: str, capability: str) -> str | None:
    """The client's reading rule: the component's assignment unless absent or "use_default", else the default."""
    model = table.get("components", {}).get(component, {}).get("assignments", {}).get(capability)
    if not model or model == "use_default":
        model = table.get("defaults", {}).get(capability)
    return model


def test_rhetor_client_generate_chat_and_assignments(simulated_rhetor: str) -> None:
    with httpx.Client(base_url=simulated_rhetor, timeout=30) as c:
        table = c.get("/api/models/assignments")  # was 404
        assert table.status_code == 200, table.text
        table_body = table.json()
        assert set(table_body["defaults"]) == {"code", "planning", "reasoning", "chat"}
        assert assigned_model(table_body, "hermes", "chat") == "claude-haiku-4-5"  # tasks.json "hermes"
        assert table_body["components"]["metis"]["assignments"]["planning"] == "use_default"  # no entry of its own
        model = assigned_model(table_body, "metis", "planning")
        assert model == table_body["defaults"]["planning"] == "claude-sonnet-5-5"
        generate = c.post("/api/v1/generate", json={  # the exact body, system_prompt included
            "prompt": "Decompose this task", "model": model, "temperature": 0.5, "max_tokens": 2000,
            "component": "metis", "capability": "planning", "system_prompt": "Answer in JSON"})
        assert generate.status_code == 200, generate.text  # was 422 "messages: Field required"
        body = generate.json()
        assert body["response"].startswith('I received your message: "Decompose this task"')
        assert body["response"] == body["content"] and body["model"] and body["usage"]["output_tokens"] > 0
        assert "# Metis - Tekton AI Component" in body["response"]  # the component selects its prompt
        chat = c.post("/api/v1/chat", json={
            "messages": [{"role": "user", "content": "hi"}], "model": assigned_model(table_body, "athena", "chat"),
            "temperature": 0.7, "max_tokens": 2000, "component": "athena", "capability": "chat"})
        assert chat.status_code == 200 and chat.json()["response"] == chat.json()["content"] != ""  # was ""
        legacy = c.post("/api/v1/generate", json={"model": "simulated-fast", "stop": ["\n\n"],
                                                  "messages": [{"role": "user", "content": "adapter"}]})
        assert legacy.status_code == 200 and legacy.json()["model"] == "simulated-fast"  # the adapter body still works
        both = c.post("/api/v1/generate", json={"prompt": "x", "messages": [{"role": "user", "content": "y"}]})
        assert both.status_code == 422 and "prompt" in both.json()["error"]["message"]
        clash = c.post("/api/v1/chat", json={"message": "x", "model": "gpt-4o", "model_id": "gpt-4o-mini"})
        assert clash.status_code == 422 and clash.json()["error"]["param"] == "model"


def test_model_and_capability_pick_the_serving_provider(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack, httpx.Client(base_url=stack.url, timeout=30) as c:
        r = c.post("/api/v1/generate", json={"prompt": "write code", "model": "gpt-4o-mini", "temperature": 0.7,
                                             "max_tokens": 64, "component": "metis", "capability": "code"})
        body = r.json()
        assert r.status_code == 200, r.text
        # before: the default chain answered (anthropic/claude-sonnet-4-5); now the named model on its provider
        assert (body["provider"], body["model"]) == ("openai", "gpt-4o-mini") and body["fallback"] is False
        assert body["response"].startswith("Hello from fake OpenAI")
        sent = stack.openai.requests[-1]
        assert sent["model"] == "gpt-4o-mini" and sent["temperature"] == 0.7
        assert 64 in (sent.get("max_tokens"), sent.get("max_completion_tokens"))
        routed = c.post("/api/v1/chat", json={"messages": [{"role": "user", "content": "x"}],
                                              "component": "metis", "capability": "code"}).json()
        assert (routed["provider"], routed["model"]) == ("anthropic", "claude-sonnet-5-5")  # the code entry
        assert stack.anthropic.requests[-1]["temperature"] == 0.2  # the code entry's own options


# -- item 11: no history shared between strangers ----------------------------------------------------------------

def ws_of(url: str) -> ClientConnection:
    return connect(url.replace("http://", "ws://") + "/ws", open_timeout=10)


def envelope_answer(ws: ClientConnection, text: str, context: str, source: str = "TERMA") -> dict[str, Any]:
    ws.send(json.dumps({"type": "LLM_REQUEST", "source": source,
                        "payload": {"message": text, "context": context, "streaming": False}}))
    while True:
        frame = json.loads(ws.recv(timeout=15))
        assert frame["type"] != "ERROR", frame
        if frame["type"] == "RESPONSE":
            payload: dict[str, Any] = frame["payload"]
            return payload


def seen(reply: str) -> int:
    """How many messages the (simulated) model was sent: it says so when there is history."""
    match = re.search(r"I see a conversation with (\d+) messages", reply)
    return int(match.group(1)) if match else 1


def test_shared_component_ids_never_merge_histories(simulated_rhetor: str) -> None:
    url = simulated_rhetor
    with ws_of(url) as first, ws_of(url) as second:
        a1 = envelope_answer(first, "one", "terma")
        a2 = envelope_answer(first, "two", "terma")
        b1 = envelope_answer(second, "three", "terma")  # before: saw the first session's 4 messages
        assert a1["context"] == a2["context"] == b1["context"] == "terma"  # what the caller matches on
        assert (seen(a1["message"]), seen(a2["message"]), seen(b1["message"])) == (1, 3, 1)
        assert a1["context_scope"] == "connection" and a1["context_id"] != b1["context_id"]
        assert a1["context_id"].startswith("terma:ws-")
        mine = httpx.get(f"{url}/api/v1/contexts/{quote(a1['context_id'], safe='')}").json()
        assert [m["content"] for m in mine["messages"] if m["role"] == "user"] == ["one", "two"]
        # the flat protocol (tekton-llm-client, context_id defaults to the component id) is scoped the same way
        first.send(json.dumps({"type": "GENERATE", "request_id": "g1", "prompt": "flat", "context_id": "ergon"}))
        flat = json.loads(first.recv(timeout=15))
        while flat.get("request_id") != "g1":  # skip any late envelope frame (typing off)
            flat = json.loads(first.recv(timeout=15))
        assert flat["type"] == "RESPONSE" and flat["context_id"].startswith("ergon:ws-") and seen(flat["content"]) == 1
    for text in ("x", "y"):  # over HTTP a shared id is stateless
        r = httpx.post(f"{url}/message", json={"message": text, "context_id": "terma"}).json()
        assert seen(r["message"]) == 1 and r["context_scope"] == "stateless"
    assert httpx.get(f"{url}/api/v1/contexts/terma").status_code == 404
    for text, expected in (("p", 1), ("q", 3)):  # `comp:session` is the way to ask for a persistent conversation
        r = httpx.post(f"{url}/message", json={"message": text, "context_id": "terma:session-1"}).json()
        assert seen(r["message"]) == expected and "context_scope" not in r


def test_control_characters_in_context_ids_are_refused(simulated_rhetor: str) -> None:
    url = simulated_rhetor
    native = httpx.post(f"{url}/api/v1/chat", json={"message": "x", "context_id": "a\nb"})
    assert native.status_code == 400 and native.json()["error"]["param"] == "context_id"  # was 200, then unfetchable
    assert "control characters" in native.json()["error"]["message"]
    legacy = httpx.post(f"{url}/message", json={"message": "x", "context_id": "tab\there"})
    assert legacy.status_code == 400 and "context_id" in legacy.json()["error"]
    listed = httpx.get(f"{url}/api/v1/contexts").json()["contexts"]
    assert not any(c["context_id"] in ("a\nb", "tab\there") for c in listed)
    with ws_of(url) as ws:
        ws.send(json.dumps({"type": "LLM_REQUEST", "source": "T",
                            "payload": {"message": "x", "context": "a\u0085b", "streaming": False}}))
        frames = [json.loads(ws.recv(timeout=15)) for _ in range(3)]
        assert [f["type"] for f in frames] == ["UPDATE", "ERROR", "UPDATE"]
        assert "control characters" in frames[1]["payload"]["error"]


def test_an_id_ending_in_export_is_reachable(simulated_rhetor: str) -> None:
    url = simulated_rhetor
    for cid in ("a/export", "a"):
        assert httpx.post(f"{url}/api/v1/chat", json={"message": cid, "context_id": cid}).status_code == 200
    escaped = httpx.get(f"{url}/api/v1/contexts/a%2Fexport")  # before: the R1 export of "a"
    assert escaped.status_code == 200 and escaped.json()["context_id"] == "a/export"
    assert escaped.json()["messages"][0]["content"] == "a/export"
    exported = httpx.get(f"{url}/api/v1/contexts/a%2Fexport/export").json()
    assert exported["context_id"] == "a/export" and exported["messages"][0]["content"] == "a/export"
    assert httpx.get(f"{url}/api/v1/contexts/a%2Fexport?format=r1").json()["context_id"] == "a/export"
    old = httpx.get(f"{url}/api/v1/contexts/a/export").json()  # the old export route still serves plain ids
    assert old["context_id"] == "a" and "max_tokens" in old
    assert httpx.delete(f"{url}/api/v1/contexts/a%2Fexport").json()["deleted"] is True
    assert httpx.get(f"{url}/api/v1/contexts/a%2Fexport").status_code == 404
