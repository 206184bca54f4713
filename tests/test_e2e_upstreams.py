"""End to end: `python -m rhetor` configured only through the documented environment variables, routing to
fake Anthropic, OpenAI and Ollama servers (real HTTP on loopback), plain and streamed, over HTTP and WS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.fakes.anthropic import FakeAnthropic, running_fake_anthropic
from tests.fakes.ollama import FakeOllama, running_fake_ollama
from tests.fakes.openai import FakeOpenAI, running_fake_openai
from tests.fakes.server import free_port

Fakes = tuple[FakeAnthropic, FakeOpenAI, FakeOllama]


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    with running_fake_anthropic() as a, running_fake_openai() as o, running_fake_ollama() as ol:
        yield a, o, ol


@pytest.fixture(scope="module")
def server(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    a, o, ol = fakes
    port = free_port()
    data: Path = tmp_path_factory.mktemp("rhetor")
    env = {**os.environ, "RHETOR_PORT": str(port), "RHETOR_DATA_DIR": str(data),
           "ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": a.base_url,
           "OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": o.base_url, "OLLAMA_HOST": ol.base_url}
    proc = subprocess.Popen([sys.executable, "-m", "rhetor"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"{url}/health")
            break
        except httpx.TransportError:
            assert proc.poll() is None and time.monotonic() < deadline, "rhetor did not start"
            time.sleep(0.1)
    yield url
    proc.terminate()
    assert proc.wait(15) == 0
    out = proc.stdout.read() if proc.stdout else ""
    assert "test-key" not in out  # keys never reach the log


def test_health_sees_every_provider(server: str) -> None:
    assert httpx.get(f"{server}/health").json()["providers"] == {
        "anthropic": True, "openai": True, "ollama": True, "gemini": False, "simulated": True}  # no Gemini key here
    providers = httpx.get(f"{server}/api/v1/providers").json()
    assert providers["default_provider"] == "anthropic"
    assert {"llama3", "llama3:latest"} <= {m["id"] for m in providers["providers"]["ollama"]["models"]}


@pytest.mark.parametrize(("provider", "model", "reply"), [
    ("claude", "claude-sonnet-4-5", "Hello from fake Anthropic"),
    ("openai", "gpt-4o-mini", "Hello from fake OpenAI"),
    ("ollama", "llama3", "Hello from fake Ollama"),
])
def test_each_provider_plain_and_streamed(server: str, fakes: Fakes, provider: str, model: str,
                                          reply: str) -> None:
    body: dict[str, Any] = {"message": "hi", "provider_id": provider, "model_id": model,
                            "context_id": f"e2e:{provider}", "options": {"max_tokens": 200}}
    r = httpx.post(f"{server}/api/v1/chat", json=body).json()
    canonical = "anthropic" if provider == "claude" else provider
    assert (r["content"], r["provider"], r["model"], r["simulated"], r["fallback"]) == (
        reply, canonical, model, False, False)
    assert r["usage"]["output_tokens"] > 0
    s = httpx.post(f"{server}/api/v1/chat/stream", json=body)
    frames = [json.loads(x[6:]) for x in s.text.splitlines() if x.startswith("data: {")]
    assert "".join(f["chunk"] for f in frames) == reply
    assert frames[-1]["done"] is True and frames[-1]["provider"] == canonical
    # the second turn carried the first one as history to the upstream
    history = httpx.get(f"{server}/api/v1/contexts/e2e:{provider}").json()
    assert history["total"] == 4


def test_history_reaches_upstream(server: str, fakes: Fakes) -> None:
    _, openai_fake, _ = fakes
    for text in ("first question", "second question"):
        httpx.post(f"{server}/api/v1/chat", json={"message": text, "provider_id": "openai",
                                                  "context_id": "ergon:history"})
    sent = openai_fake.requests[-1]["messages"]
    assert sent[0]["role"] == "system" and "Ergon" in sent[0]["content"]
    assert [m["content"] for m in sent[1:] if m["role"] == "user"] == ["first question", "second question"]
    assert sent[2]["role"] == "assistant"


def test_websocket_stream_from_ollama(server: str) -> None:
    with connect(server.replace("http", "ws") + "/ws") as ws:
        ws.send(json.dumps({"type": "STREAM", "request_id": "o1", "prompt": "hi", "provider_id": "ollama"}))
        chunks = []
        while True:
            frame = json.loads(ws.recv(timeout=10))
            chunks.append(frame)
            if frame["done"]:
                break
    assert "".join(c["chunk"] for c in chunks) == "Hello from fake Ollama"
    assert chunks[-1]["provider"] == "ollama" and chunks[-1]["finish_reason"] == "stop"


def test_upstream_failure_falls_back_across_real_providers(server: str, fakes: Fakes) -> None:
    anthropic_fake, _, _ = fakes
    anthropic_fake.fail_next(401)
    r = httpx.post(f"{server}/api/v1/chat", json={"message": "hi", "task_type": "chat"}).json()
    assert r["provider"] == "openai" and r["fallback"] is True
    assert r["attempts"][0] == {**r["attempts"][0], "provider": "anthropic", "status": 401}
