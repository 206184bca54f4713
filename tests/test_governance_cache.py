"""The response cache through a real Rhetor: opt-in per request (`x-rhetor-cache`), per tasks.json route; hits for
non-streaming and streaming replies on every front (native, legacy, OpenAI and Anthropic SDKs, WebSocket), replayed
in the caller's protocol and marked (`x-rhetor-cache: hit`, `cached: true`); a hit costs 0 in the ledger with the
cost saved recorded; errors and cancelled streams are never cached; TTL and the size bound; a bad directive is a
400 naming the header."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from websockets.sync.client import connect

from rhetor.governance.cache import CachedReply, MemoryCache
from rhetor.routing.config import TaskConfig
from rhetor.settings import Settings
from rhetor.types import ChatResponse
from tests.conftest import running_rhetor
from tests.conftest import test_settings as base_settings
from tests.fakes.stack import running_stack

USE = {"x-rhetor-cache": "use"}
MSG = [{"role": "user", "content": "tell me something"}]


def settings(tmp_path: Path, **kw: Any) -> Settings:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"simulated": {"*": {"input": 1000.0, "output": 1000.0}}}))
    return base_settings(tmp_path, prices_file=prices, usage_flush_interval_s=0.1, **kw)


def sse_data(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


def records(url: str, **params: Any) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/api/v1/usage/requests", params={"limit": 1000, **params}, timeout=10)
    out: list[dict[str, Any]] = r.json()["records"]
    return out


def test_non_streaming_hits_on_every_http_front_cost_nothing(tmp_path: Path) -> None:
    with running_rhetor(settings(tmp_path)) as url:
        first = httpx.post(f"{url}/api/v1/chat", json={"message": "cache me", "request_id": "a"}, headers=USE)
        again = httpx.post(f"{url}/api/v1/chat", json={"message": "cache me"}, headers={**USE, "x-request-id": "hit-1"})
        assert first.headers["x-rhetor-cache"] == "miss" and first.json()["cached"] is False
        assert again.headers["x-rhetor-cache"] == "hit" and again.json()["cached"] is True
        assert again.json()["content"] == first.json()["content"] and again.json()["attempts"][0]["outcome"] == "cached"
        assert "x-rhetor-cache" not in httpx.post(f"{url}/api/v1/chat", json={"message": "cache me"}).headers  # opt-in
        legacy = [httpx.post(f"{url}/message", json={"message": "legacy cache"}, headers=USE) for _ in range(2)]
        assert legacy[1].headers["x-rhetor-cache"] == "hit" and legacy[1].json()["cached"] is True
        oa = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, default_headers=USE)
        o = [oa.chat.completions.with_raw_response.create(model="simulated/simulated-fast", messages=MSG)  # type: ignore[arg-type]
             for _ in range(2)]
        assert o[1].headers["x-rhetor-cache"] == "hit"
        assert o[1].parse().choices[0].message.content == o[0].parse().choices[0].message.content
        an = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0, default_headers=USE)
        a = [an.messages.with_raw_response.create(model="simulated/simulated-fast", max_tokens=60, messages=MSG)  # type: ignore[arg-type]
             for _ in range(2)]
        assert a[1].headers["x-rhetor-cache"] == "hit" and a[1].parse().content == a[0].parse().content
        hit = next(r for r in records(url) if r["request_id"] == "hit-1")
        assert hit["cache_hit"] is True and hit["cost_usd"] == 0 and hit["saved_usd"] > 0 and hit["status"] == "ok"
        assert hit["input_tokens"] == 0 and hit["output_tokens"] == 0
        assert sum(r["cache_hit"] for r in records(url)) == 4  # native, legacy, OpenAI, Anthropic: one record each


def test_streaming_hits_replay_the_same_chunks_in_each_protocol(tmp_path: Path) -> None:
    with running_rhetor(settings(tmp_path)) as url:
        body = {"message": "stream me", "provider_id": "simulated", "model_id": "simulated-fast"}
        s1, s2 = (httpx.post(f"{url}/api/v1/chat/stream", json=body, headers=USE, timeout=30) for _ in range(2))
        f1, f2 = sse_data(s1.text), sse_data(s2.text)
        assert s2.headers["x-rhetor-cache"] == "hit" and len(f1) > 3
        assert [f["chunk"] for f in f2] == [f["chunk"] for f in f1] and f2[-1]["cached"] is True
        assert s2.text.endswith("data: [DONE]\n\n")
        legacy = [httpx.post(f"{url}/stream", json={"message": "old stream"}, headers=USE, timeout=30)
                  for _ in range(2)]
        assert legacy[1].headers["x-rhetor-cache"] == "hit" and "event: message" in legacy[1].text
        assert sse_data(legacy[1].text)[-1]["done"] is True
        oa = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, default_headers=USE)
        texts = []
        for _ in range(2):
            with oa.chat.completions.with_streaming_response.create(model="simulated/simulated-fast", messages=MSG,  # type: ignore[arg-type]
                                                                    stream=True) as resp:
                texts.append(("".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices),
                              resp.headers.get("x-rhetor-cache")))
        assert texts[0][0] == texts[1][0] and texts[1][1] == "hit"
        an = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0, default_headers=USE)
        got = []
        for _ in range(2):
            with an.messages.stream(model="simulated/simulated-fast", max_tokens=60, messages=MSG) as st:  # type: ignore[arg-type]
                got.append(st.get_final_text())
        assert got[0] == got[1] and got[0]
        # a non-streamed request is served from a streamed entry, assembled
        j = httpx.post(f"{url}/api/v1/chat", json=body, headers=USE, timeout=30).json()
        assert j["cached"] is True and j["content"] == "".join(f["chunk"] for f in f1)


def test_websocket_hits_with_the_handshake_header(tmp_path: Path) -> None:
    with running_rhetor(settings(tmp_path)) as url, \
            connect(url.replace("http://", "ws://") + "/ws", additional_headers=USE) as ws:
        replies = []
        for i in range(2):
            ws.send(json.dumps({"type": "GENERATE", "request_id": f"g{i}", "prompt": "ws cache"}))
            replies.append(json.loads(ws.recv(timeout=20)))
        assert replies[0]["cached"] is False and replies[1]["cached"] is True
        assert replies[0]["content"] == replies[1]["content"]
        streams: list[list[dict[str, Any]]] = []
        for i in range(2):
            ws.send(json.dumps({"type": "STREAM", "request_id": f"s{i}", "prompt": "ws stream"}))
            frames = []
            while not frames or not frames[-1].get("done"):
                frames.append(json.loads(ws.recv(timeout=20)))
            streams.append(frames)
        assert [f["chunk"] for f in streams[0]] == [f["chunk"] for f in streams[1]]
        assert streams[1][-1]["cached"] is True


def test_route_opt_in_and_per_request_refresh_and_off(tmp_path: Path) -> None:
    config = TaskConfig.model_validate({"default": {"provider": "simulated", "model": "simulated-fast"},
                                        "faq": {"provider": "simulated", "model": "simulated-fast", "cache": True}})
    with running_rhetor(settings(tmp_path), config) as url:
        def ask(task: str, **headers: str) -> httpx.Response:
            return httpx.post(f"{url}/api/v1/chat", json={"message": "same", "task_type": task}, headers=headers)

        assert ask("faq").headers["x-rhetor-cache"] == "miss"
        assert ask("faq").headers["x-rhetor-cache"] == "hit"
        assert "x-rhetor-cache" not in ask("faq", **{"x-rhetor-cache": "off"}).headers
        refreshed = ask("faq", **{"x-rhetor-cache": "refresh"})
        assert refreshed.headers["x-rhetor-cache"] == "refresh" and refreshed.json()["cached"] is False
        assert ask("faq").headers["x-rhetor-cache"] == "hit"
        assert "x-rhetor-cache" not in ask("default").headers  # that route did not opt in
        with pytest.raises(Exception, match="cache"):
            TaskConfig.model_validate({"default": {"provider": "simulated", "cache": "yes"}})


def test_errors_and_cancelled_streams_are_never_cached(tmp_path: Path) -> None:
    with running_stack(tmp_path, simulated_delay_scale=0.5) as stack:
        url = stack.url
        body = {"model": "openai/gpt-4o-mini", "messages": MSG}
        stack.openai.fail_next(400)  # not retryable: the pinned model answers an error
        failed = httpx.post(f"{url}/v1/chat/completions", json=body, headers=USE, timeout=30)
        assert failed.status_code == 400
        ok = httpx.post(f"{url}/v1/chat/completions", json=body, headers=USE, timeout=30)
        assert ok.status_code == 200 and ok.headers["x-rhetor-cache"] == "miss"  # the error was not kept
        assert httpx.post(f"{url}/v1/chat/completions", json=body, headers=USE, timeout=30).headers["x-rhetor-cache"] \
            == "hit"
        stack.openai.cut_next(2)  # a stream cut mid-way: never stored
        cut = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "cut me"}], "stream": True}
        httpx.post(f"{url}/v1/chat/completions", json=cut, headers=USE, timeout=30)
        again = httpx.post(f"{url}/v1/chat/completions", json=cut, headers=USE, timeout=30)
        assert again.headers["x-rhetor-cache"] == "miss"
        with httpx.stream("POST", f"{url}/api/v1/chat/stream", json={"message": "leave early",
                                                                     "provider_id": "simulated",
                                                                     "model_id": "simulated-standard"},
                          headers=USE, timeout=30) as r:
            next(r.iter_lines())  # the caller goes away after the first line: the stream is cancelled
        time.sleep(0.3)
        r2 = httpx.post(f"{url}/api/v1/chat/stream", json={"message": "leave early", "provider_id": "simulated",
                                                           "model_id": "simulated-standard"}, headers=USE, timeout=30)
        assert r2.headers["x-rhetor-cache"] == "miss"


def test_bad_directive_is_400_naming_the_header(tmp_path: Path) -> None:
    with running_rhetor(settings(tmp_path)) as url:
        r = httpx.post(f"{url}/api/v1/chat", json={"message": "x"}, headers={"x-rhetor-cache": "sometimes"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "x-rhetor-cache"
        oa = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0,
                           default_headers={"x-rhetor-cache": "always"})
        with pytest.raises(openai.BadRequestError) as exc:
            oa.chat.completions.create(model="simulated/simulated-fast", messages=MSG)  # type: ignore[arg-type]
        assert exc.value.param == "x-rhetor-cache"


def test_memory_cache_ttl_and_size_bound() -> None:
    def reply(n: int) -> CachedReply:
        return CachedReply(ChatResponse("x" * n, "m", "p"), None, size=n)

    cache = MemoryCache(ttl_s=0.05, max_bytes=4000)
    cache.put("a", reply(900))
    assert cache.get("a") is not None
    time.sleep(0.08)
    assert cache.get("a") is None and len(cache) == 0  # expired, and dropped
    for key in "abcde":
        cache.put(key, reply(900))
    assert cache.bytes <= 4000 and cache.get("a") is None and cache.get("e") is not None  # LRU evicted first
    cache.put("big", reply(2000))  # more than a quarter of the cache: never stored
    assert cache.get("big") is None
