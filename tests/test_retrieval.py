"""Retrieval through the real HTTP API: a conversation that outgrows the model's window keeps its recent
turns and gets back the relevant old one (semantic, and the lexical fallback with no embedder); the memory
routes (search a context, search a component, summarize, status) and their input errors."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest

from rhetor.catalog import load_catalog
from rhetor.context.embedder import local_available
from rhetor.routing.config import TaskConfig
from rhetor.settings import Settings
from tests.fakes.openai import FakeOpenAI, running_fake_openai

OLD = ("Where did we put the staging database password?",
       "The staging database password lives in Vault under secret/staging/postgres, rotated every Monday.")
FILLER = [
    ("Any ideas for a quick vegetarian dinner?", "A chickpea curry with spinach and rice takes thirty minutes."),
    ("What should I read this summer?", "Try a long novel such as Middlemarch, or short stories by Alice Munro."),
    ("How do I keep basil alive indoors?", "Give it six hours of sunlight and water it when the soil feels dry."),
    ("Which board game works for four players?", "Catan or Ticket to Ride both play well with four people."),
    ("How long should I boil an egg?", "Seven minutes gives a jammy yolk; ten minutes makes it fully set."),
    ("What is a good stretch after running?", "A standing quad stretch and a calf stretch against a wall."),
]
QUESTION = "Remind me: where is the password for the staging database kept?"
Rhetor = Callable[..., AbstractContextManager[str]]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with running_fake_openai() as f:
        yield f


def _settings(make: Callable[..., Settings], fake: FakeOpenAI, **kw: Any) -> Settings:
    return make(openai_api_key="test-key", openai_base_url=fake.base_url, index_interval_s=0.1, **kw)


def _chat(url: str, message: str, context_id: str, **extra: Any) -> dict[str, Any]:
    body = {"message": message, "context_id": context_id, "provider_id": "openai", "model_id": "gpt-4o-mini", **extra}
    r = httpx.post(f"{url}/api/v1/chat", json=body, timeout=10)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _seed(url: str, context_id: str) -> list[dict[str, Any]]:
    for user, _ in [OLD, *FILLER]:
        _chat(url, user, context_id)
    return list(httpx.get(f"{url}/api/v1/contexts/{context_id}", params={"limit": 1000}).json()["messages"])


def _drained(url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60  # the local model's first load takes seconds
    while True:
        status: dict[str, Any] = httpx.get(f"{url}/api/v1/memory/status").json()
        if (status["backlog"] == 0 and status["indexed"] == status["embedded"]) or time.monotonic() > deadline:
            return status
        time.sleep(0.02)


def _tight() -> dict[str, Any]:
    """Options leaving ~300 prompt tokens for gpt-4o-mini: the seeded history cannot all fit."""
    window = load_catalog().context_window("openai", "gpt-4o-mini")
    return {"max_tokens": window - int(window * 0.05) - 300}


@pytest.mark.parametrize("embedder", [
    "simulated", "none",
    pytest.param("local", marks=pytest.mark.skipif(not local_available(), reason="the local extra is not installed")),
])
def test_outgrown_window_brings_back_the_relevant_old_turn(
        rhetor: Rhetor, make_settings: Callable[..., Settings], fake: FakeOpenAI, embedder: str) -> None:
    with rhetor(_settings(make_settings, fake, embedder=embedder)) as url:
        stored = _seed(url, "ergon:ops")
        status = _drained(url)
        assert status["retrieval"] == ("lexical" if embedder == "none" else "semantic") and status["backlog"] == 0
        reply = _chat(url, QUESTION, "ergon:ops", options=_tight())
        sent = [m["content"] for m in fake.requests[-1]["messages"] if m["role"] != "system"]

    assert reply["retrieval"] == ("lexical" if embedder == "none" else "semantic")
    old_user = next(m for m in stored if m["content"] == OLD[0])
    old_ids = {old_user["id"], old_user["id"] + 1}
    assert {r["id"] for r in reply["retrieved"]} >= {old_user["id"]}
    assert {r["id"] for r in reply["retrieved"]} <= old_ids  # nothing irrelevant came back
    assert reply["retrieved"][0]["role"] == "user" and reply["retrieved"][0]["score"] > 0
    assert sent[0] == OLD[0] and sent[-1] == QUESTION  # the old turn first, the new message last
    assert FILLER[-1][0] in sent  # the most recent turn is kept
    assert FILLER[0][0] not in sent  # an old irrelevant turn is not


def test_a_conversation_that_fits_says_nothing_about_retrieval(
        rhetor: Rhetor, make_settings: Callable[..., Settings], fake: FakeOpenAI) -> None:
    with rhetor(_settings(make_settings, fake, embedder="simulated")) as url:
        _seed(url, "ergon:small")
        reply = _chat(url, QUESTION, "ergon:small")
    assert "retrieved" not in reply and "retrieval" not in reply


def test_stream_final_frame_reports_retrieval(
        rhetor: Rhetor, make_settings: Callable[..., Settings], fake: FakeOpenAI) -> None:
    with rhetor(_settings(make_settings, fake, embedder="simulated")) as url:
        _seed(url, "ergon:stream")
        _drained(url)
        body = {"message": QUESTION, "context_id": "ergon:stream", "provider_id": "openai",
                "model_id": "gpt-4o-mini", "options": _tight()}
        with httpx.stream("POST", f"{url}/api/v1/chat/stream", json=body, timeout=10) as r:
            frames = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    final = httpx.Response(200, content=frames[-2]).json()
    assert frames[-1] == "[DONE]" and final["done"] is True
    assert final["retrieval"] == "semantic" and final["retrieved"]


def test_window_follows_the_targets_that_can_be_tried(
        rhetor: Rhetor, make_settings: Callable[..., Settings], fake: FakeOpenAI) -> None:
    """A keyless vendor first in the route (a ~1M-token window the runner skips) does not size the history: the
    window is the first available target's, so the outgrown conversation is recalled, not all loaded and cut."""
    routes = TaskConfig.model_validate({"default": {"targets": [
        {"provider": "anthropic", "model": "claude-sonnet-5-5"}, {"provider": "openai", "model": "gpt-4o-mini"}]}})
    with rhetor(_settings(make_settings, fake, embedder="simulated"), routes) as url:
        for user, _ in [OLD, *FILLER]:
            r = httpx.post(f"{url}/api/v1/chat", json={"message": user, "context_id": "ergon:keyless"}, timeout=10)
            assert r.status_code == 200 and r.json()["provider"] == "openai", r.text
        _drained(url)
        r = httpx.post(f"{url}/api/v1/chat", json={"message": QUESTION, "context_id": "ergon:keyless",
                                                   "options": _tight()}, timeout=10)
        sent = [m["content"] for m in fake.requests[-1]["messages"] if m["role"] != "system"]
    assert r.status_code == 200, r.text
    reply = r.json()
    assert reply["provider"] == "openai" and reply["retrieval"] == "semantic" and reply["retrieved"]
    assert sent[0] == OLD[0] and sent[-1] == QUESTION


def test_search_routes(rhetor: Rhetor, make_settings: Callable[..., Settings], fake: FakeOpenAI) -> None:
    with rhetor(_settings(make_settings, fake, embedder="simulated")) as url:
        _seed(url, "ergon:a")
        _chat(url, "Vault also holds the production password for postgres.", "ergon:b")
        _chat(url, "Vault is where the staging database password lives too.", "athena:c")
        _drained(url)
        one = httpx.post(f"{url}/api/v1/contexts/ergon:a/search", json={"query": QUESTION, "k": 3}).json()
        comp = httpx.post(f"{url}/api/v1/components/ergon/search", json={"query": "vault password", "k": 10}).json()
        r1 = httpx.post(f"{url}/contexts/ergon:a/search", params={"query": "staging password", "k": "2"}).json()
        anywhere = httpx.post(f"{url}/api/v1/memory/search", json={"query": "vault password"}).json()
    assert one["retrieval"] == "semantic" and len(one["results"]) == 3
    assert one["results"][0]["content"] in OLD and {h["context_id"] for h in one["results"]} == {"ergon:a"}
    assert {h["context_id"] for h in comp["results"]} == {"ergon:a", "ergon:b"}  # athena's is not ergon's
    assert len(r1["results"]) == 2 and r1["results"][0]["content"] in OLD
    assert "athena:c" in {h["context_id"] for h in anywhere["results"]}


def test_lexical_search_without_embedder(rhetor: Rhetor, make_settings: Callable[..., Settings],
                                         fake: FakeOpenAI) -> None:
    with rhetor(_settings(make_settings, fake, embedder="none")) as url:
        _seed(url, "ergon:lex")
        status = httpx.get(f"{url}/api/v1/memory/status").json()
        found = httpx.post(f"{url}/api/v1/contexts/ergon:lex/search", json={"query": "staging passwords"}).json()
        nothing = httpx.post(f"{url}/api/v1/contexts/ergon:lex/search", json={"query": "the of and"}).json()
    assert status["retrieval"] == "lexical" and status["state"] == "off"
    assert found["retrieval"] == "lexical" and found["results"][0]["content"] in OLD  # porter: passwords ~ password
    assert nothing["results"] == []


def test_summarize_uses_the_routed_model_and_records_nothing(
        rhetor: Rhetor, make_settings: Callable[..., Settings]) -> None:
    with rhetor(make_settings(embedder="none")) as url:
        for text in ("We chose Postgres.", "Deploys happen on Tuesdays."):
            httpx.post(f"{url}/api/v1/chat", json={"message": text, "context_id": "telos:plan"})
        r = httpx.post(f"{url}/api/v1/contexts/telos:plan/summarize", timeout=10)
        after = httpx.get(f"{url}/api/v1/contexts/telos:plan").json()
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["summary"] and body["simulated"] is True and body["provider"] == "simulated"
    assert body["message_count"] == 4 and after["message_count"] == 4  # the summary is not a turn


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), [
    ("post", "/api/v1/contexts/ergon:x/search", {"k": 3}, 422, "query"),
    ("post", "/api/v1/contexts/ergon:x/search", {"query": "a", "k": 0}, 422, "k"),
    ("post", "/api/v1/contexts/ergon:x/search", {"query": ""}, 422, "query"),
    ("post", "/api/v1/components/bad%20name/search", {"query": "a"}, 400, "component"),
    ("post", "/api/v1/memory/search", {"query": "a", "context_id": "x", "component": "y"}, 400, "component"),
    ("post", "/api/v1/contexts/ergon:x/summarize", {"max_messages": 0}, 422, "max_messages"),
    ("get", "/api/v1/memory/status?context_id=" + "x" * 300, None, 400, "context_id"),
])
def test_bad_input_names_the_field(simulated_rhetor: str, method: str, path: str, body: Any, status: int,
                                   field: str) -> None:
    r = httpx.request(method.upper(), simulated_rhetor + path, json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == field


def test_unknown_context_is_404(simulated_rhetor: str) -> None:
    for route in ("search", "summarize"):
        r = httpx.post(f"{simulated_rhetor}/api/v1/contexts/nope/{route}", json={"query": "x"})
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
