"""The fast lane (rhetor.api.fastlane) answers exactly as the full FastAPI stack does: same statuses, bodies,
error shapes and headers for the hot POST routes, valid or not; CORS requests, other methods and routes with
parameters keep the full stack; the route label of the metrics is the route's path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute

from rhetor.api.fastlane import fast_routes
from rhetor.settings import Settings
from tests.conftest import running_rhetor

VOLATILE = {"date", "x-request-id", "x-rhetor-overhead-ms", "content-length"}
CHAT = {"model": "simulated/simulated-fast", "messages": [{"role": "user", "content": "hi"}]}
CASES: list[tuple[str, Any, dict[str, str]]] = [
    ("/api/v1/chat", {"message": "hi"}, {}),
    ("/api/v1/chat", {"message": "hi", "options": {"stop": [1]}}, {}),  # 400 naming options.stop
    ("/api/v1/chat", b"{not json", {}),
    ("/v1/chat/completions", CHAT, {}),
    ("/v1/chat/completions", {**CHAT, "stream": True}, {}),
    ("/v1/chat/completions", {"model": "nope/none", "messages": []}, {}),
    ("/v1/chat/completions", b"[1,2", {}),
    ("/v1/messages", {"model": "simulated/simulated-fast", "max_tokens": 16,
                      "messages": [{"role": "user", "content": "hi"}]}, {}),
    ("/v1/messages", {"max_tokens": "many"}, {}),
    ("/message", {"message": "hi"}, {}),
    ("/v1/chat/completions", CHAT, {"origin": "http://ui.example"}),  # CORS: the full stack on both
    ("/v1/embeddings", {"model": "simulated/simulated-embedding", "input": "hi"}, {}),
]


def _post(url: str, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    content = body if isinstance(body, bytes) else None
    return httpx.post(url + path, json=None if content is not None else body, content=content,
                      headers={"content-type": "application/json", **headers}, timeout=10)


def _normal(r: httpx.Response) -> tuple[int, dict[str, str], Any]:
    headers = {k: v for k, v in r.headers.items() if k not in VOLATILE}
    try:
        body: Any = r.json()
    except ValueError:
        body = [line.split(":", 1)[0] for line in r.text.splitlines()]  # SSE: the field names in order
    return r.status_code, headers, _shape(body)


def _shape(value: Any) -> Any:
    """The JSON's structure and its error types/messages; ids and timestamps vary between two servers."""
    if isinstance(value, dict):
        return {k: (v if k in ("type", "code", "message", "param", "error_type") and isinstance(v, str)
                    else _shape(v)) for k, v in value.items() if k not in ("id", "created", "timestamp")}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


def test_the_fast_lane_answers_as_the_full_stack(make_settings: Callable[..., Settings]) -> None:
    with running_rhetor(make_settings(fast_lane=True)) as fast, running_rhetor(make_settings(fast_lane=False)) as slow:
        for path, body, headers in CASES:
            a, b = _normal(_post(fast, path, body, headers)), _normal(_post(slow, path, body, headers))
            assert a == b, (path, body, headers)
        cors = _post(fast, "/v1/chat/completions", CHAT, {"origin": "http://ui.example"})
        assert cors.headers["access-control-allow-origin"] == "*"
        plain = _post(fast, "/v1/chat/completions", CHAT, {})
        assert plain.headers["vary"] == "Origin" and plain.headers["x-request-id"]


def test_fast_lane_body_cap_and_keys(make_settings: Callable[..., Settings]) -> None:
    for fast_lane in (True, False):
        settings = make_settings(fast_lane=fast_lane, max_body_bytes=1024, api_keys=["sekret"])
        with running_rhetor(settings) as url:
            big = _post(url, "/v1/chat/completions", {**CHAT, "pad": "x" * 4096}, {"authorization": "Bearer sekret"})
            assert big.status_code == 413
            refused = _post(url, "/v1/messages", CHAT, {})
            assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
            ok = _post(url, "/v1/chat/completions", CHAT, {"authorization": "Bearer sekret"})
            assert ok.status_code == 200, ok.text


def test_fast_lane_requests_are_labelled_by_route(make_settings: Callable[..., Settings]) -> None:
    with running_rhetor(make_settings(fast_lane=True)) as url:
        assert _post(url, "/v1/chat/completions", CHAT, {}).status_code == 200
        text = httpx.get(url + "/metrics", timeout=10).text
        assert any('route="/v1/chat/completions"' in line and 'method="POST"' in line and 'code="200"' in line
                   for line in text.splitlines() if line.startswith("rhetor_http_requests_total"))


async def _ok(request: Any) -> PlainTextResponse:
    return PlainTextResponse("ok")


def _sync(request: Any) -> PlainTextResponse:
    return PlainTextResponse("ok")


@pytest.mark.parametrize("routes, expected", [
    ([Route("/a", _ok, methods=["POST"]), Route("/b/{x}", _ok, methods=["POST"]), Route("/c", _ok, methods=["GET"]),
      WebSocketRoute("/d", _ok)], {"/a"}),
    ([Route("/{any:path}", _ok, methods=["POST"]), Route("/a", _ok, methods=["POST"])], set()),  # shadowed
    ([Route("/a", _sync, methods=["POST"])], set()),  # a sync endpoint runs in Starlette's threadpool
    ([Route("/a", _ok, methods=["POST"]), Route("/a", _sync, methods=["POST"])], {"/a"}),  # the first one
])
def test_fast_routes_are_what_the_router_would_pick(routes: list[Any], expected: set[str]) -> None:
    found = fast_routes(routes)
    assert set(found) == expected
    for path, route in found.items():
        assert route is next(r for r in routes if getattr(r, "path", None) == path)
