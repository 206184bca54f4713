"""Lossless fronts (issue 11 items 1-2): same-vendor pass-through byte-for-byte both ways, and the cross-vendor
table (rhetor.providers.fidelity, docs/fronts.md): every field translated as written or refused with a 400 naming
it and the provider, lenient mode dropping and listing instead. Official SDKs against recording fake upstreams."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from rhetor.providers.fidelity import REFUSED, TABLE, rewrite_doc
from tests.fakes.stack import Stack, running_stack

HI = [{"role": "user", "content": "Hi"}]
OPENAI_EXTRAS: dict[str, Any] = {  # every field the issue names as silently dropped before
    "reasoning_effort": "low", "logprobs": True, "top_logprobs": 2, "frequency_penalty": 0.5,
    "presence_penalty": -0.5, "logit_bias": {"50256": -100}, "metadata": {"run": "r-1"}, "store": True,
    "service_tier": "flex", "prediction": {"type": "content", "content": "Hello"},
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("fidelity")) as s:
        yield s


@pytest.fixture(autouse=True)
def _reset(stack: Stack) -> None:
    for fake in (stack.openai, stack.anthropic):
        fake.reply_extra, fake.usage_extra = {}, {}
    stack.openai.message_extra, stack.openai.choice_extra = {}, {}
    stack.anthropic.thinking = None


def oai(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0)


def claude(stack: Stack) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.url, api_key="unused", max_retries=0)


# ------------------------------------------------------------------ item 1: same-vendor pass-through


def test_openai_body_reaches_openai_byte_for_byte(stack: Stack) -> None:
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "developer", "content": "Be brief."}, *HI],
            "max_completion_tokens": 50, **OPENAI_EXTRAS, "n": 2, "web_search_options": {}}
    r = httpx.post(stack.url + "/v1/chat/completions", content=orjson.dumps(body),
                   headers={"content-type": "application/json", "OpenAI-Beta": "assistants=v2"})
    assert r.status_code == 200 and r.headers["x-rhetor-passthrough"] == "true"
    assert stack.openai.raw_requests[-1] == orjson.dumps({**body, "model": "gpt-4o-mini"})  # only model rewritten
    assert stack.openai.headers[-1]["openai-beta"] == "assistants=v2"
    assert len(r.json()["choices"]) == 2  # n > 1: native on an upstream that has it


def test_openai_sdk_fields_arrive_and_reply_fields_come_back(stack: Stack) -> None:
    stack.openai.reply_extra = {"service_tier": "flex"}
    stack.openai.choice_extra = {"logprobs": {"content": [{"token": "Hello", "logprob": -0.1, "bytes": None,
                                                           "top_logprobs": []}], "refusal": None}}
    stack.openai.usage_extra = {"prompt_tokens_details": {"cached_tokens": 5, "audio_tokens": 0},
                                "completion_tokens_details": {"reasoning_tokens": 3, "audio_tokens": 0}}
    with oai(stack) as client:
        r = client.chat.completions.create(model="openai/gpt-5.4-mini", messages=HI, **OPENAI_EXTRAS,
                                           extra_headers={"x-rhetor-context-id": "fid-openai-1"})
    sent = stack.openai.requests[-1]
    assert sent["model"] == "gpt-5.4-mini" and {k: sent[k] for k in OPENAI_EXTRAS} == OPENAI_EXTRAS
    assert r.service_tier == "flex" and r.system_fingerprint == "fp_fake0001"
    assert r.choices[0].logprobs is not None and r.choices[0].logprobs.content[0].token == "Hello"
    assert r.usage is not None and r.usage.prompt_tokens_details is not None
    assert r.usage.prompt_tokens_details.cached_tokens == 5
    assert r.usage.completion_tokens_details is not None and r.usage.completion_tokens_details.reasoning_tokens == 3
    # Rhetor still read the text for the context
    ctx = httpx.get(stack.url + "/api/v1/contexts/fid-openai-1").json()
    assert "Hello from fake OpenAI" in orjson.dumps(ctx).decode()


def test_openai_stream_relayed_with_every_field(stack: Stack) -> None:
    stack.openai.usage_extra = {"prompt_tokens_details": {"cached_tokens": 5}}
    with oai(stack) as client:
        chunks = list(client.chat.completions.create(model="openai/gpt-4o-mini", messages=HI, stream=True,
                                                     stream_options={"include_usage": True}, logprobs=True))
        assert all(c.service_tier == "default" and c.system_fingerprint == "fp_fake0001" for c in chunks)
        usage = chunks[-1].usage
        assert usage is not None and usage.prompt_tokens_details is not None
        assert usage.prompt_tokens_details.cached_tokens == 5
        assert stack.openai.requests[-1]["logprobs"] is True
        # usage was asked on Rhetor's own account (the ledger): not relayed to a caller who did not ask
        plain = list(client.chat.completions.create(model="openai/gpt-4o-mini", messages=HI, stream=True))
        assert all(c.choices for c in plain) and stack.openai.requests[-1]["stream_options"]["include_usage"]
    assert "".join(c.choices[0].delta.content or "" for c in plain) == "Hello from fake OpenAI"


CLAUDE_BODY: dict[str, Any] = {
    "model": "anthropic/claude-sonnet-4-5", "max_tokens": 3000,
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}],
    "thinking": {"type": "enabled", "budget_tokens": 2000}, "service_tier": "standard_only",
    "metadata": {"user_id": "u-9"}, "container": "c-1",
}


def test_anthropic_body_and_betas_reach_anthropic_byte_for_byte(stack: Stack) -> None:
    stack.anthropic.usage_extra = {"cache_read_input_tokens": 5, "cache_creation_input_tokens": 3}
    stack.anthropic.thinking = "Let me think."
    r = httpx.post(stack.url + "/v1/messages", content=orjson.dumps(CLAUDE_BODY),
                   headers={"content-type": "application/json", "anthropic-version": "2023-06-01",
                            "anthropic-beta": "context-1m-2025-08-07"})
    assert r.status_code == 200 and r.headers["x-rhetor-passthrough"] == "true"
    assert stack.anthropic.raw_requests[-1] == orjson.dumps({**CLAUDE_BODY, "model": "claude-sonnet-4-5"})
    assert stack.anthropic.request_headers[-1]["anthropic-beta"] == "context-1m-2025-08-07"
    reply = r.json()
    assert reply["content"][0] == {"type": "thinking", "thinking": "Let me think.", "signature": "sig-fake"}
    assert reply["usage"]["cache_read_input_tokens"] == 5 and reply["usage"]["cache_creation_input_tokens"] == 3


def test_anthropic_sdk_cache_usage_reaches_the_client_streamed_and_not(stack: Stack) -> None:
    stack.anthropic.usage_extra = {"cache_read_input_tokens": 5, "cache_creation_input_tokens": 3}
    with claude(stack) as client:
        m = client.messages.create(model="anthropic/claude-sonnet-4-5", max_tokens=100, messages=HI,
                                   service_tier="auto", extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"})
        assert m.usage.cache_read_input_tokens == 5 and m.usage.cache_creation_input_tokens == 3
        assert stack.anthropic.requests[-1]["service_tier"] == "auto"
        with client.messages.stream(model="anthropic/claude-sonnet-4-5", max_tokens=100, messages=HI) as s:
            final = s.get_final_message()
    assert final.usage.cache_read_input_tokens == 5 and final.content[0].text == "Hello from fake Anthropic"


def test_rhetor_additions_are_spliced_into_the_callers_body(stack: Stack) -> None:
    with oai(stack) as client:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=HI, logprobs=True,
                                       extra_headers={"x-rhetor-component": "athena"})
    sent = stack.openai.requests[-1]
    assert sent["messages"][0]["role"] == "system" and "Athena" in sent["messages"][0]["content"]
    assert sent["messages"][1:] == HI and sent["logprobs"] is True
    with claude(stack) as client:
        client.messages.create(model="anthropic/claude-sonnet-4-5", max_tokens=50, messages=HI,
                               system=[{"type": "text", "text": "Mine.", "cache_control": {"type": "ephemeral"}}],
                               extra_headers={"x-rhetor-component": "athena"})
    system = stack.anthropic.requests[-1]["system"]
    assert "Athena" in system[0]["text"]
    assert system[1] == {"type": "text", "text": "Mine.", "cache_control": {"type": "ephemeral"}}


# ------------------------------------------------------------------ item 2: the cross-vendor table


SAMPLES: dict[str, dict[str, Any]] = {
    "openai": {"n": 2, "logprobs": True, "top_logprobs": 2, "frequency_penalty": 0.5, "presence_penalty": 0.5,
               "logit_bias": {"1": 1}, "metadata": {"a": "b"}, "store": True, "seed": 7, "reasoning_effort": "low",
               "any other field": {"web_search_options": {}}},
    "anthropic": {"top_k": 5, "thinking": {"type": "enabled", "budget_tokens": 2000},
                  "any other field": {"container": "c-1"}},
}
PEER_MODEL = {"openai": "anthropic/claude-sonnet-4-5", "anthropic": "openai/gpt-4o-mini"}
WIRE_MODEL = {"ollama": "ollama/llama3", "simulated": "simulated/simulated-fast"}
CASES = [(api, name, wire) for api, samples in SAMPLES.items() for name in samples
         for wire in ("peer", "ollama", "simulated") if TABLE[api][name][wire] == REFUSED]


def _post(stack: Stack, api: str, model: str, extra: dict[str, Any],
          headers: dict[str, str] | None = None) -> httpx.Response:
    if api == "openai":
        return httpx.post(stack.url + "/v1/chat/completions", json={"model": model, "messages": HI, **extra},
                          headers=headers)
    return httpx.post(stack.url + "/v1/messages", json={"model": model, "max_tokens": 50, "messages": HI, **extra},
                      headers=headers)


@pytest.mark.parametrize(("api", "name", "wire"), CASES)
def test_refused_fields_are_a_400_naming_field_and_provider(stack: Stack, api: str, name: str, wire: str) -> None:
    sample = SAMPLES[api][name]
    extra = sample if name == "any other field" else {name: sample}
    field = next(iter(extra))
    model = PEER_MODEL[api] if wire == "peer" else WIRE_MODEL[wire]
    provider = model.split("/")[0]
    r = _post(stack, api, model, extra)
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert message.startswith(f"{field} is not supported by provider {provider}")
    if api == "openai":
        assert r.json()["error"]["param"] == field
    else:
        assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"
    lenient = _post(stack, api, model, extra, {"x-rhetor-lenient": "1"})
    assert lenient.status_code == 200, lenient.text
    assert lenient.headers["x-rhetor-dropped-fields"] == field


PDF = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}


def test_lenient_drops_documents_and_betas_cross_vendor(stack: Stack) -> None:
    body = {**CLAUDE_BODY, "model": "openai/gpt-4o-mini"}
    for key in ("container", "service_tier"):
        body.pop(key)
    body["messages"] = [{"role": "user", "content": [PDF, *CLAUDE_BODY["messages"][0]["content"]]}]
    refused = httpx.post(stack.url + "/v1/messages", json=body, headers={"anthropic-beta": "x"})
    assert refused.status_code == 400
    assert refused.json()["error"]["message"].startswith(
        "messages[0].content[0] (document) is not supported by provider openai")
    r = httpx.post(stack.url + "/v1/messages", json=body, headers={"anthropic-beta": "x", "x-rhetor-lenient": "1"})
    assert r.status_code == 200 and r.headers["x-rhetor-dropped-fields"] == \
        "messages[0].content[0] (document),anthropic-beta header"
    sent = stack.openai.requests[-1]
    # thinking → reasoning_effort (2000 ≤ 2048: low); cache_control not sent; metadata.user_id → user; the image
    # block → an image_url part with a data: URL
    assert sent["reasoning_effort"] == "low" and sent["user"] == "u-9"
    assert sent["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": [
                                    {"type": "text", "text": "Hi"},
                                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]


DATA_URL = "data:image/jpeg;base64,/9j/4AAQSkZJRg=="


def _image_turn(url: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                         {"type": "image_url", "image_url": {"url": url, "detail": "low"}}]}]


def test_images_translate_between_every_provider_that_takes_them(stack: Stack) -> None:
    with oai(stack) as client:
        client.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=_image_turn(DATA_URL))
        assert stack.anthropic.requests[-1]["messages"] == [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}},
            {"type": "text", "text": "What is this?"}]}]
        client.chat.completions.create(model="ollama/llama3", messages=_image_turn(DATA_URL))
        assert stack.ollama.requests[-1]["messages"][-1]["images"] == ["/9j/4AAQSkZJRg=="]
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model="ollama/llama3", messages=_image_turn("https://x.test/cat.png"))
        assert err.value.body["param"] == "messages[0].content[1]"  # type: ignore[index]
        ok = client.chat.completions.create(model="simulated/simulated-fast", messages=_image_turn(DATA_URL))
        assert ok.choices[0].message.content
        with pytest.raises(openai.BadRequestError) as err:  # the catalogue: gpt-audio-mini takes text and audio
            client.chat.completions.create(model="openai/gpt-audio-mini", messages=_image_turn(DATA_URL))
        assert "messages[0].content[1] (image) is not supported by model 'gpt-audio-mini'" in err.value.message
    with claude(stack) as c:
        c.messages.create(model="openai/gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.png"}},
            {"type": "text", "text": "What is this?"}]}])
    assert stack.openai.requests[-1]["messages"][-1]["content"] == [
        {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}}]


def test_reasoning_effort_becomes_a_thinking_budget_and_thinking_comes_back(stack: Stack) -> None:
    stack.anthropic.thinking = "Weighing it up."
    stack.anthropic.usage_extra = {"cache_read_input_tokens": 5, "cache_creation_input_tokens": 3}
    with oai(stack) as client:
        r = client.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=HI,
                                           reasoning_effort="medium", max_completion_tokens=1000,
                                           service_tier="default", user="u-2")
    sent = stack.anthropic.requests[-1]
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 8192} and sent["max_tokens"] == 9192
    assert sent["service_tier"] == "standard_only" and sent["metadata"] == {"user_id": "u-2"}
    assert r.choices[0].message.model_extra["reasoning_content"] == "Weighing it up."
    assert r.usage is not None and r.usage.prompt_tokens_details is not None
    assert r.usage.prompt_tokens_details.cached_tokens == 5  # cache_read_input_tokens → cached_tokens
    assert r.usage.prompt_tokens == sent_words(sent) + 8  # cache reads and writes are part of prompt_tokens


def sent_words(sent: dict[str, Any]) -> int:
    return max(1, sum(len(str(m["content"]).split()) for m in sent["messages"]))


def test_openai_cached_tokens_become_cache_read_input_tokens(stack: Stack) -> None:
    stack.openai.usage_extra = {"prompt_tokens_details": {"cached_tokens": 4}}
    stack.openai.message_extra = {"reasoning_content": "Hmm."}
    with claude(stack) as client:
        m = client.messages.create(model="openai/gpt-4o-mini", max_tokens=100, messages=HI,
                                   thinking={"type": "enabled", "budget_tokens": 20000}, service_tier="auto")
    sent = stack.openai.requests[-1]
    assert sent["reasoning_effort"] == "high" and sent["service_tier"] == "auto"
    assert m.usage.cache_read_input_tokens == 4 and m.usage.input_tokens == sent_prompt(sent) - 4
    assert m.content[0].type == "thinking" and m.content[0].thinking == "Hmm."


def sent_prompt(sent: dict[str, Any]) -> int:
    return sum(len(str(m.get("content", "")).split()) + 4 for m in sent["messages"])


def test_json_object_and_odd_service_tiers_are_refused_cross_vendor(stack: Stack) -> None:
    r = _post(stack, "openai", "anthropic/claude-sonnet-4-5", {"response_format": {"type": "json_object"}})
    assert r.status_code == 400 and "response_format.type=json_object is not supported by provider anthropic" \
        in r.json()["error"]["message"]
    r = _post(stack, "openai", "anthropic/claude-sonnet-4-5", {"service_tier": "flex"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "service_tier"
    ok = _post(stack, "openai", "simulated/simulated-fast", {"service_tier": "auto", "n": 1, "store": False})
    assert ok.status_code == 200 and "x-rhetor-dropped-fields" not in ok.headers


def test_docs_table_matches_the_code() -> None:
    """docs/fronts.md prints TABLE word for word (so the README's promise is the behaviour); regenerate it with
    `python -m rhetor.providers.fidelity docs/fronts.md`."""
    text = (Path(__file__).parent.parent / "docs" / "fronts.md").read_text()
    assert rewrite_doc(text) == text
    for api, fields in TABLE.items():
        section = text.split(f"<!-- table:{api} -->")[1].split("<!-- /table -->")[0]
        assert all(f"| `{name}` |" in section for name in fields)


def test_n_fans_out_on_upstreams_without_it_and_is_native_on_openai(stack: Stack) -> None:
    with oai(stack) as client:
        one = client.chat.completions.create(model="simulated/simulated-fast", messages=HI)
        r = client.chat.completions.create(model="simulated/simulated-fast", messages=HI, n=3)
        assert [c.index for c in r.choices] == [0, 1, 2] and len({c.message.content for c in r.choices}) == 1
        assert r.usage is not None and one.usage is not None and r.usage.total_tokens == 3 * one.usage.total_tokens
        before = len(stack.anthropic.requests)
        r = client.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=HI, n=2)
        assert len(r.choices) == 2 and len(stack.anthropic.requests) == before + 2
        assert "n" not in stack.anthropic.requests[-1]
        with pytest.raises(openai.BadRequestError) as err:  # more than MAX_FANOUT upstream requests
            client.chat.completions.create(model="simulated/simulated-fast", messages=HI, n=9)
    assert err.value.body["param"] == "n"  # type: ignore[index]  # streams fan out too: tests/test_fanout_stream.py


def test_token_array_embeddings(stack: Stack) -> None:
    """LangChain's OpenAIEmbeddings sends token ids by default: OpenAI takes them; elsewhere a 400 says what to do."""
    with oai(stack) as client:
        r = client.embeddings.create(model="openai/text-embedding-3-small", input=[[9906, 1917], [15339]])
        assert [d.index for d in r.data] == [0, 1] and stack.openai.embedding_requests[-1]["input"] == [[9906, 1917],
                                                                                                       [15339]]
        one = client.embeddings.create(model="openai/text-embedding-3-small", input=[9906, 1917])
        assert len(one.data) == 1
        with pytest.raises(openai.BadRequestError) as err:
            client.embeddings.create(model="simulated/simulated-embedding", input=[[9906, 1917]])
    assert err.value.body["param"] == "input"  # type: ignore[index]
    assert "check_embedding_ctx_length=False" in err.value.message and "simulated" in err.value.message


def test_passthrough_off_takes_the_translated_path(tmp_path: Path) -> None:
    """RHETOR_PASSTHROUGH=0 (benchmarks/run.py --off-env): same-vendor requests are translated and judged like any
    other provider's, never silently."""
    with running_stack(tmp_path, passthrough=False) as s:
        r = httpx.post(s.url + "/v1/chat/completions", json={"model": "openai/gpt-4o-mini", "messages": HI})
        assert r.status_code == 200 and r.headers["x-rhetor-passthrough"] == "false"
        assert r.json()["model"] == "openai/gpt-4o-mini"
        refused = httpx.post(s.url + "/v1/chat/completions",
                             json={"model": "openai/gpt-4o-mini", "messages": HI, "logprobs": True})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "logprobs"
