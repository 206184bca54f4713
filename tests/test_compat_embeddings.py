"""/v1/embeddings through the official SDK (OpenAI, Ollama and simulated providers; float and base64), the model
lists of both SDKs, and server-side contexts for standard clients (x-rhetor-context-id / x-rhetor-component)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from rhetor.providers.simulated_embed import DIMENSIONS, embed_text
from tests.fakes.stack import Stack, running_stack
from tests.fakes.tools import fake_vector


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(Path(tmp_path_factory.mktemp("compat-embed"))) as s:
        yield s


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0) as c:
        yield c


def test_openai_embeddings_base64_default_and_float(client: openai.OpenAI, stack: Stack) -> None:
    r = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])  # SDK asks for base64
    assert [d.index for d in r.data] == [0, 1] and r.model == "openai/text-embedding-3-small"
    assert r.data[1].embedding == pytest.approx(fake_vector("beta"), abs=1e-6)
    assert stack.openai.embedding_requests[-1]["input"] == ["alpha", "beta"]
    f = client.embeddings.create(model="openai/text-embedding-3-large", input="alpha", encoding_format="float")
    assert f.data[0].embedding == pytest.approx(fake_vector("alpha")) and f.usage.prompt_tokens == 1


def test_ollama_embeddings(client: openai.OpenAI, stack: Stack) -> None:
    r = client.embeddings.create(model="ollama/llama3", input=["one two", "three"])
    assert [d.embedding for d in r.data] == [pytest.approx(fake_vector(t)) for t in ("one two", "three")]
    assert r.usage.prompt_tokens == 3 and stack.ollama.embed_requests[-1]["input"] == ["one two", "three"]


def test_simulated_embeddings_are_deterministic_unit_vectors(client: openai.OpenAI) -> None:
    r = client.embeddings.create(model="simulated/simulated-embedding",
                                 input=["the cat sat on the mat", "a cat on a mat", "quarterly tax filing"])
    a, b, c = (d.embedding for d in r.data)
    assert len(a) == DIMENSIONS == 384
    assert math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-5)
    cos = [sum(x * y for x, y in zip(a, other, strict=True)) for other in (b, c)]
    assert cos[0] > 0.3 > abs(cos[1])
    assert a == pytest.approx(embed_text("The cat sat on the mat!"), abs=1e-6)  # case and punctuation ignored


def test_embedding_errors(client: openai.OpenAI, stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError, match="does not offer embeddings"):
        client.embeddings.create(model="anthropic/claude-sonnet-4-5", input="x")
    with pytest.raises(openai.BadRequestError, match="task route"):
        client.embeddings.create(model="rhetor/default", input="x")
    stack.openai.fail_next(429)
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model="openai/text-embedding-3-small", input="x")
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="ollama/not-pulled", input="x")


def test_models_in_both_shapes(client: openai.OpenAI, stack: Stack) -> None:
    ids = {m.id: m.owned_by for m in client.models.list()}
    assert ids["anthropic/claude-sonnet-4-5"] == "anthropic" and ids["ollama/llama3:latest"] == "ollama"
    assert ids["simulated/simulated-embedding"] == "simulated" and ids["rhetor/code"] == "rhetor"
    assert client.models.retrieve("openai/gpt-4o").owned_by == "openai"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("openai/gpt-0")
    with anthropic.Anthropic(base_url=stack.url, api_key="x", max_retries=0) as ant:
        page = ant.models.list()
        assert "anthropic/claude-sonnet-4-5" in [m.id for m in page.data]
        assert ant.models.retrieve("rhetor/code").type == "model"


def test_context_headers_keep_a_server_side_conversation(client: openai.OpenAI, stack: Stack) -> None:
    headers = {"x-rhetor-context-id": "ergon:compat-1", "x-rhetor-component": "ergon"}
    for text in ("first", "second"):
        r = client.chat.completions.create(model="simulated/simulated-fast", extra_headers=headers,
                                           messages=[{"role": "user", "content": text}])
    assert "conversation with 3 messages" in (r.choices[0].message.content or "")  # history came from the store
    stored = httpx.get(stack.url + "/api/v1/contexts/ergon:compat-1", timeout=5).json()
    assert [m["content"] for m in stored["messages"] if m["role"] == "user"] == ["first", "second"]
    client.chat.completions.create(model="anthropic/claude-sonnet-4-5", extra_headers=headers, max_tokens=20,
                                   messages=[{"role": "user", "content": "third"}])
    sent = stack.anthropic.requests[-1]
    assert sent["system"].startswith("# Ergon")  # the component's system prompt
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user", "assistant", "user"]


def test_without_context_headers_requests_are_stateless(client: openai.OpenAI) -> None:
    before = httpx.get(client.base_url.join("/api/v1/contexts").__str__(), timeout=5).json()["total"]
    client.chat.completions.create(model="simulated/simulated-fast", messages=[{"role": "user", "content": "x"}])
    after = httpx.get(client.base_url.join("/api/v1/contexts").__str__(), timeout=5).json()["total"]
    assert before == after
