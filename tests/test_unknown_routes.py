"""Unknown routes and wrong methods under /v1/* answer in the calling SDK's error shape (404/405), so the official
`openai` and `anthropic` SDKs raise their own typed errors; paths outside /v1/ keep FastAPI's answer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from rhetor.settings import Settings
from tests.conftest import running_rhetor


@pytest.fixture
def url(make_settings: Callable[..., Settings]) -> Iterator[str]:
    with running_rhetor(make_settings()) as base:
        yield base


def test_unknown_openai_route_is_a_404_in_openai_shape(url: str) -> None:
    r = httpx.post(url + "/v1/no/such/thing", json={}, timeout=10)
    assert r.status_code == 404
    assert r.json() == {"error": {"message": "Invalid URL (POST /v1/no/such/thing): no such route",
                                  "type": "invalid_request_error", "param": None, "code": "unknown_url"}}
    with openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client, \
            pytest.raises(openai.NotFoundError) as err:
        client.get("/assistants", cast_to=object)
    assert err.value.code == "unknown_url" and "/v1/assistants" in err.value.message


def test_wrong_method_is_a_405_naming_the_allowed_ones(url: str) -> None:
    r = httpx.get(url + "/v1/chat/completions", timeout=10)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    err: dict[str, Any] = r.json()["error"]
    assert err["code"] == "method_not_allowed" and err["type"] == "invalid_request_error"
    assert "GET" in err["message"] and "POST" in err["message"]
    with openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client, \
            pytest.raises(openai.APIStatusError) as caught:
        client.put("/responses", cast_to=object)
    assert caught.value.status_code == 405


def test_unknown_anthropic_route_is_a_404_in_anthropic_shape(url: str) -> None:
    with anthropic.Anthropic(base_url=url, api_key="x", max_retries=0) as client, \
            pytest.raises(anthropic.NotFoundError) as err:
        client.get("/v1/messages/batches", cast_to=object)
    assert err.value.body == {"type": "error", "error": {
        "type": "not_found_error", "message": "Invalid URL (GET /v1/messages/batches): no such route"}}
    r = httpx.get(url + "/v1/messages", headers={"anthropic-version": "2023-06-01"}, timeout=10)
    assert r.status_code == 405 and r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "invalid_request_error" and r.headers["allow"] == "POST"


def test_outside_v1_keeps_the_native_answer(url: str) -> None:
    r = httpx.get(url + "/no/such/page", timeout=10)
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
