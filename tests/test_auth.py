"""RHETOR_API_KEYS: every route but health and readiness needs a caller key (Bearer or x-api-key), refusals are
401 in the caller's API format (so each SDK raises AuthenticationError), and keys never reach the logs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
import websockets

from rhetor.api.presented import digest, key_matches, presented_key
from rhetor.errors import ConfigError
from rhetor.settings import Settings
from tests.conftest import running_rhetor
from tests.conftest import test_settings as settings_for

KEYS = ("rk-alpha-0123456789", "rk-beta-9876543210")
HI = [{"role": "user", "content": "hi"}]


def test_settings_parse_keys_inline_and_from_a_file(tmp_path: Path) -> None:
    s = Settings.from_env({"RHETOR_API_KEYS": " a , b,a "})
    assert [k.get_secret_value() for k in s.api_keys] == ["a", "b"]
    assert "a" not in repr(s.api_keys)
    path = tmp_path / "keys"
    path.write_text("# rotated monthly\nkey-one\nkey-two, key-three\n")
    s = Settings.from_env({"RHETOR_API_KEYS": str(path)})
    assert [k.get_secret_value() for k in s.api_keys] == ["key-one", "key-two", "key-three"]
    with pytest.raises(ConfigError, match="RHETOR_API_KEYS"):
        Settings.from_env({"RHETOR_API_KEYS": str(tmp_path / "missing")})


def test_key_matching_is_exact() -> None:
    digests = tuple(digest(k.encode()) for k in KEYS)
    assert key_matches(KEYS[1].encode(), digests)
    assert not key_matches(KEYS[1][:-1].encode(), digests) and not key_matches(None, digests)
    assert presented_key([(b"authorization", b"Bearer  tok ")]) == b"tok"
    assert presented_key([(b"authorization", b"Basic tok"), (b"x-api-key", b"k")]) == b"k"


def test_keys_guard_every_front(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with running_rhetor(settings_for(tmp_path, api_keys=KEYS)) as url:
        for path in ("/health", "/api/v1/health"):
            assert httpx.get(url + path, timeout=5).status_code == 200
        assert httpx.get(url + "/ready", timeout=5).status_code in (200, 503)  # exempt: never 401

        with openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0) as bad:
            with pytest.raises(openai.AuthenticationError) as o:
                bad.chat.completions.create(model="simulated/simulated-fast", messages=HI)
        assert o.value.code == "invalid_api_key"
        with anthropic.Anthropic(base_url=url, api_key="wrong", max_retries=0) as bad_a:
            with pytest.raises(anthropic.AuthenticationError) as a:
                bad_a.messages.create(model="simulated/simulated-fast", max_tokens=5, messages=HI)
        assert a.value.body["error"]["type"] == "authentication_error"
        native = httpx.post(url + "/api/v1/chat", json={"message": "hi"}, timeout=5)
        assert native.status_code == 401 and native.json()["error"]["type"] == "authentication_error"
        assert httpx.options(url + "/v1/chat/completions", timeout=5, headers={
            "origin": "http://x", "access-control-request-method": "POST"}).status_code == 200  # CORS preflight

        with openai.OpenAI(base_url=url + "/v1", api_key=KEYS[0], max_retries=0) as good:
            assert good.chat.completions.create(model="simulated/simulated-fast", messages=HI).choices
        with anthropic.Anthropic(base_url=url, api_key=KEYS[1], max_retries=0) as good_a:  # sent as x-api-key
            assert good_a.messages.create(model="simulated/simulated-fast", max_tokens=5, messages=HI).content
        ok = httpx.post(url + "/api/v1/chat", json={"message": "hi"}, timeout=5,
                        headers={"authorization": f"Bearer {KEYS[0]}"})
        assert ok.status_code == 200
    assert not any(k in caplog.text for k in KEYS)
    assert "wrong" not in caplog.text


async def test_websocket_needs_a_key(tmp_path: Path) -> None:
    with running_rhetor(settings_for(tmp_path, api_keys=KEYS)) as url:
        ws_url = url.replace("http", "ws") + "/ws"
        async with websockets.connect(ws_url) as refused:  # accepted, told why in an ERROR frame, closed 1008
            frame = json.loads(await refused.recv())
            assert frame["type"] == "ERROR" and frame["error_type"] == "authentication_error"
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await refused.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        async with websockets.connect(ws_url, additional_headers={"x-api-key": KEYS[0]}) as ws:
            await ws.send('{"type": "PING", "request_id": "1"}')
            assert "PONG" in str(await ws.recv())
