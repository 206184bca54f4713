"""Request `options` are checked once, before routing, on every front: a bad value is a 400 naming
`options.<field>` in that front's shape, the keep-alive connection (or WebSocket) survives, good values reach
the provider typed."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from websockets.sync.client import connect

from rhetor.errors import InvalidRequestError
from rhetor.routing.options import request_options
from rhetor.settings import Settings
from tests.fakes.ollama import running_fake_ollama

BAD_STOP = {"stop": [1]}  # the body: a TypeError in the simulated provider, a 500, a dropped connection


@pytest.mark.parametrize(("options", "param"), [
    ({"stop": [1]}, "options.stop"),
    ({"stop": 1}, "options.stop"),
    ({"temperature": "hot"}, "options.temperature"),
    ({"temperature": True}, "options.temperature"),
    ({"temperature": 2.5}, "options.temperature"),
    ({"top_p": -0.1}, "options.top_p"),
    ({"max_tokens": 0}, "options.max_tokens"),
    ({"max_tokens": 1.5}, "options.max_tokens"),
    ({"max_tokens": 1e30}, "options.max_tokens"),
    ({"seed": "7"}, "options.seed"),
    ({"seed": 2**64}, "options.seed"),
    ({"fallback_provider": 1}, "options.fallback_provider"),
    ({"fallback_model": ["x"]}, "options.fallback_model"),
    ({"provider": {}}, "options.provider"),
    ({"model": 3}, "options.model"),
])
def test_bad_values_name_the_field(options: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        request_options(options)
    assert caught.value.param == param and caught.value.status == 400
    assert caught.value.message.startswith(param)


def test_good_values_are_normalized_and_unknown_keys_pass() -> None:
    raw = {"stop": "END", "temperature": 1, "max_tokens": 100.0, "seed": -3, "top_k": {"any": [1]},
           "fallback_provider": None, "provider": "Claude", "model": ""}
    assert request_options(raw) == {"stop": ["END"], "temperature": 1.0, "max_tokens": 100, "seed": -3,
                                    "top_k": {"any": [1]}, "fallback_provider": None, "provider": "Claude",
                                    "model": ""}
    assert request_options(None) == {} and request_options({"x": 1}) == {"x": 1}
    with pytest.raises(InvalidRequestError) as caught:
        request_options(["stop"])
    assert caught.value.param == "options"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.conftest import running_rhetor, test_settings

    with running_rhetor(test_settings(tmp_path_factory.mktemp("options"))) as url:
        yield url


def _post(conn: http.client.HTTPConnection, path: str, body: Any) -> tuple[int, bytes]:
    conn.request("POST", path, json.dumps(body), {"content-type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    assert not resp.will_close, f"{path} closed the keep-alive connection"
    return resp.status, data


def test_every_http_front_answers_400_and_keeps_the_connection(served: str) -> None:
    conn = http.client.HTTPConnection(served.removeprefix("http://"), timeout=10)
    status, _ = _post(conn, "/api/v1/chat", {"message": "remember me", "context_id": "ergon:opts"})
    assert status == 200
    sock = conn.sock
    cases = [
        ("/api/v1/chat", {"message": "hi", "options": BAD_STOP}),
        ("/api/v1/chat", {"message": "hi", "streaming": True, "options": BAD_STOP}),
        ("/api/v1/chat/stream", {"message": "hi", "options": BAD_STOP}),
        ("/message", {"message": "hi", "options": BAD_STOP}),
        ("/message", {"message": "hi", "streaming": True, "options": BAD_STOP}),
        ("/stream", {"message": "hi", "options": BAD_STOP}),
        ("/chat", {"messages": [{"role": "user", "content": "hi"}], "options": BAD_STOP}),
        ("/api/v1/contexts/ergon:opts/summarize", {"options": BAD_STOP}),
        ("/contexts/ergon:opts/summarize", {"options": BAD_STOP}),
    ]
    for path, body in cases:
        status, data = _post(conn, path, body)
        assert status == 400, (path, status, data)
        error = json.loads(data)["error"]
        text = error if isinstance(error, str) else error["message"]  # the legacy shape carries a string
        assert "options.stop[0]" in text, (path, data)
        if isinstance(error, dict):
            assert error["param"] == "options.stop"
        assert conn.sock is sock, f"{path} dropped the keep-alive connection"
    status, data = _post(conn, "/api/v1/chat", {"message": "a b", "options": {"stop": "simulated", "seed": 1}})
    assert status == 200 and "simulated" not in json.loads(data)["content"] and conn.sock is sock
    conn.close()


def test_websocket_fronts_answer_an_error_and_stay_open(served: str) -> None:
    with connect(served.replace("http", "ws") + "/ws") as ws:
        ws.send(json.dumps({"type": "CHAT", "request_id": "r1", "messages": [{"role": "user", "content": "hi"}],
                            "options": BAD_STOP}))
        frame = json.loads(ws.recv(timeout=10))
        assert frame["type"] == "ERROR" and frame["request_id"] == "r1" and "options.stop[0]" in frame["error"]
        ws.send(json.dumps({"type": "LLM_REQUEST", "source": "UI", "payload": {"message": "hi",
                                                                             "options": {"temperature": "x"}}}))
        frames = [json.loads(ws.recv(timeout=10)) for _ in range(3)]
        errors = [f for f in frames if f["type"] == "ERROR"]
        assert errors and "options.temperature" in errors[0]["payload"]["error"]
        ws.send(json.dumps({"type": "PING", "request_id": "p"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "PONG"


def test_seed_in_options_reaches_the_provider(
        rhetor: Callable[..., AbstractContextManager[str]], make_settings: Callable[..., Settings]) -> None:
    with running_fake_ollama() as fake, rhetor(make_settings(ollama_host=fake.base_url)) as url:
        conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
        status, data = _post(conn, "/api/v1/chat", {"message": "hi", "options": {
            "provider": "ollama", "model": "llama3", "seed": 7, "stop": "END", "max_tokens": 5.0}})
        assert status == 200, data
        sent = fake.requests[-1]["options"]
        assert sent["seed"] == 7 and sent["stop"] == ["END"] and sent["num_predict"] == 5
        conn.close()


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"k": value}
    return value


def test_a_value_too_deep_for_the_upstream_is_a_400_not_a_500(
        rhetor: Callable[..., AbstractContextManager[str]], make_settings: Callable[..., Settings]) -> None:
    # Unknown options pass through (Anthropic forwards `metadata`); JSON encoders stop at 255 levels.
    from tests.fakes.anthropic import running_fake_anthropic

    with running_fake_anthropic() as fake, rhetor(make_settings(anthropic_api_key="sk-ant-test",
                                                                anthropic_base_url=fake.base_url)) as url:
        conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
        status, data = _post(conn, "/api/v1/chat", {"message": "hi", "options": {
            "provider": "anthropic", "metadata": _nested(300)}})
        assert status == 400 and b"cannot be sent to anthropic" in data, data
        sock = conn.sock
        status, data = _post(conn, "/api/v1/chat", {"message": "hi", "options": {"provider": "anthropic"}})
        assert status == 200 and conn.sock is sock, data
        conn.close()
