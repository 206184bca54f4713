"""The access log: one INFO line per request on every front (JSON with RHETOR_LOG_FORMAT=json), carrying the
request id, key name, front, route, provider/model, attempts, status, tokens, cost, latency and TTFT; refused
requests too; never a key or message content; warnings carry the request id."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets
from pydantic import SecretStr

from rhetor.observability.logs import JsonFormatter, TextFormatter, current_request
from rhetor.settings import Settings

HI = [{"role": "user", "content": "hi"}]
SECRET_TEXT = "the-user-secret-prompt-17"


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    fmt = JsonFormatter()
    return [json.loads(fmt.format(r)) for r in caplog.records if r.name == "rhetor.access"]


async def test_one_json_access_line_per_request_on_every_front(make_settings: Callable[..., Settings], rhetor: Any,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rhetor.access")
    key = "rk-secret-key-0123456789"
    with rhetor(make_settings(api_keys=(SecretStr(key),))) as url:
        h = {"authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=url, headers=h, timeout=10) as c:
            assert (await c.post("/api/v1/chat", json={"message": SECRET_TEXT, "provider_id": "simulated"})).is_success
            async with c.stream("POST", "/api/v1/chat/stream", json={"message": "hi", "provider_id": "simulated"}) as r:
                assert [t async for t in r.aiter_text()]
            assert (await c.post("/v1/chat/completions", json={"model": "simulated/simulated-fast", "messages": HI},
                                 headers={"x-request-id": "rid-openai-1"})).is_success
            assert (await c.post("/v1/messages", json={"model": "simulated/simulated-fast", "max_tokens": 8,
                                                       "messages": HI})).is_success
            assert (await c.post("/message", json={"message": "hi"})).is_success
            assert (await c.post("/api/v1/chat", json={"message": 3})).status_code in (400, 422)
        async with httpx.AsyncClient(base_url=url) as bare:  # no key: refused, still one line
            assert (await bare.post("/api/v1/chat", json={"message": "hi"})).status_code == 401
        async with websockets.connect(url.replace("http", "ws") + "/ws",
                                      additional_headers=h) as ws:
            await ws.send(json.dumps({"type": "GENERATE", "request_id": "ws-frame-1", "prompt": "hi",
                                      "provider_id": "simulated"}))
            assert json.loads(await ws.recv())["type"] == "RESPONSE"
    lines = access_lines(caplog)
    by_route = [(x.get("route"), x.get("status")) for x in lines]
    assert len(lines) == 8, by_route  # six HTTP model requests + one refused for its key + one WebSocket frame
    assert {x.get("front") for x in lines} >= {"native", "openai", "anthropic", "legacy", "ws"}
    openai_line = next(x for x in lines if x["request_id"] == "rid-openai-1")
    assert openai_line["status"] == 200 and openai_line["provider"] == "simulated"
    assert openai_line["model"] == "simulated-fast" and openai_line["attempts"] == 1
    assert openai_line["output_tokens"] > 0 and openai_line["latency_ms"] > 0 and "cost_usd" in openai_line
    stream = next(x for x in lines if x["route"] == "/api/v1/chat/stream")
    assert stream["ttft_ms"] is not None and stream["outcome"] == "ok"
    refused = [x for x in lines if x["route"] == "/api/v1/chat" and x["status"] in (400, 401, 422)]
    assert {x["status"] for x in refused} >= {401} and len(refused) == 2
    ws_line = next(x for x in lines if x.get("front") == "ws")
    assert ws_line["request_id"] == "ws-frame-1" and ws_line["outcome"] == "ok"
    text = caplog.text + json.dumps(lines)
    assert key not in text and SECRET_TEXT not in text


def test_warnings_carry_the_request_id_and_text_format() -> None:
    rec = logging.LogRecord("rhetor", logging.WARNING, __file__, 1, "upstream slow", None, None)

    class Slot:
        rid = "req-77"

    token = current_request.set(Slot())
    try:
        assert json.loads(JsonFormatter().format(rec))["request_id"] == "req-77"
        assert TextFormatter().format(rec).endswith("[request_id=req-77]")
    finally:
        current_request.reset(token)
    assert "request_id" not in json.loads(JsonFormatter().format(rec))
    assert Settings.from_env({"RHETOR_LOG_FORMAT": "text"}).log_format == "text"
    assert Settings.from_env({"RHETOR_ACCESS_LOG": "0"}).access_log is False
