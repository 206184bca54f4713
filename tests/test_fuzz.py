"""Property-based fuzz of every POST/PUT route (enumerated from the app, so a new route is fuzzed by default):
random JSON, near-valid bodies with fields and options of the wrong type, huge and deeply nested values,
invalid UTF-8 and wrong content types. The property: never a 5xx, and the same keep-alive connection serves
the next request. Plus the WebSocket: random frames never close the socket.

Bounded for CI: a fixed number of examples per route, no per-example deadline (shared CI cores), a request
timeout, and no example database written into the checkout. The whole file runs in well under 60 s.
"""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route
from websockets.sync.client import connect

from rhetor.api.app import create_app
from rhetor.errors import InvalidRequestError
from rhetor.routing.options import KNOWN as OPTION_KEYS
from rhetor.routing.options import request_options
from tests.conftest import running_rhetor
from tests.conftest import test_settings as settings_for

# Stops the server under test (tests/test_lifecycle.py covers it); everything else is fuzzed.
NOT_FUZZED = {"/shutdown", "/api/shutdown"}
CONTEXT = "ergon:fuzz"
PATH_VALUES = {"context_id": CONTEXT, "component": "ergon", "template_id": "fuzz-tpl", "model_id": "simulated"}
# A near-valid starting point per route, so mutations reach past the body's first check. Routes not listed
# start from the native chat body.
CHAT = {"message": "hi"}
MESSAGES = {"messages": [{"role": "user", "content": "hi"}]}
BASES: dict[str, dict[str, Any]] = {
    "/chat": MESSAGES, "/api/v1/generate": MESSAGES, "/api/v1/generate_stream": MESSAGES,
    "/provider": {"provider_id": "simulated"}, "/api/provider": {"provider_id": "simulated"},
    "/api/v1/templates": {"id": "fuzz-new", "text": "Hi {{ name }}"},
    "/api/v1/templates/{template_id}": {"text": "Hello {{ name }}"},
    "/api/v1/templates/{template_id}/render": {"variables": {"name": "x"}},
    "/api/v1/memory/search": {"query": "hi"}, "/api/v1/components/{component}/search": {"query": "hi"},
    "/api/v1/contexts/{context_id:path}/search": {"query": "hi"}, "/contexts/{context_id:path}/search": {"query": "hi"},
    "/api/v1/contexts/{context_id:path}/summarize": {}, "/contexts/{context_id:path}/summarize": {},
    "/v1/chat/completions": {"model": "simulated/simulated-fast", **MESSAGES},
    "/v1/messages": {"model": "simulated/simulated-fast", "max_tokens": 16, **MESSAGES},
    "/v1/messages/count_tokens": {"model": "simulated/simulated-fast", **MESSAGES},
    "/v1/embeddings": {"model": "simulated/simulated-embedding", "input": "hi"},
}
FIELDS = sorted({"message", "messages", "context_id", "task_type", "component", "provider_id", "model_id",
                 "system_prompt", "streaming", "stream", "options", "template_id", "template_version", "variables",
                 "model", "provider", "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop",
                 "stop_sequences", "seed", "tools", "tool_choice", "response_format", "system", "input", "query",
                 "k", "max_messages", "id", "text", "metadata", "activate", "active_version", "version", "prompt",
                 "encoding_format", "stream_options", "n", "user", "top_k", "output_config"})
CONTENT_TYPES = ["application/json", "text/plain", "application/x-www-form-urlencoded", "application/octet-stream",
                 "multipart/form-data; boundary=xyz", "application/json; charset=latin-1", None]
IDLE_S = 3.0  # a connection unused this long is replaced first (uvicorn's keep-alive timeout is 5 s)
EXAMPLES = 12  # per route and strategy: ~25 routes x 2 strategies x 12 = 600 requests (+ a probe each)


def _post_routes() -> list[tuple[str, str]]:
    app = create_app(settings_for(Path("/nonexistent/rhetor-fuzz")))  # builds routes only: no I/O before lifespan
    found = {(m, r.path) for r in app.routes if isinstance(r, Route) for m in (r.methods or ()) if m in ("POST", "PUT")}
    return sorted((m, p) for m, p in found if p not in NOT_FUZZED)


ROUTES = _post_routes()


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: PATH_VALUES.get(m.group(1), "x"), path)


class Client:
    """One keep-alive connection for the whole module; a probe after each request proves it survived."""

    def __init__(self, base: str) -> None:
        self.host = base.removeprefix("http://")
        self.conn = http.client.HTTPConnection(self.host, timeout=30)
        self.used = time.monotonic()

    def _fresh(self) -> None:  # after a failed example only, so the next example starts clean (shrinking)
        self.conn.close()
        self.conn = http.client.HTTPConnection(self.host, timeout=30)

    def check(self, method: str, path: str, body: bytes, content_type: str | None = "application/json") -> int:
        headers = {"content-type": content_type} if content_type else {}
        if time.monotonic() - self.used > IDLE_S:  # uvicorn closes a keep-alive connection idle for 5 s: fair
            self._fresh()
        try:
            self.conn.request(method, path, body, headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self._fresh()
            raise AssertionError(f"{method} {path}: connection dropped ({exc!r})") from None
        if resp.status >= 500 or resp.will_close:
            self._fresh()
        assert resp.status < 500, f"{method} {path} -> {resp.status}: {data[:300]!r}"
        assert not resp.will_close, f"{method} {path} -> {resp.status} closed the keep-alive connection"
        sock = self.conn.sock
        try:
            self.conn.request("GET", "/api/v1/contexts/" + CONTEXT + "/export")
            probe = self.conn.getresponse()
            probe.read()
        except (OSError, http.client.HTTPException) as exc:
            self._fresh()
            raise AssertionError(f"{method} {path} -> {resp.status}, then the connection was gone ({exc!r})") from None
        assert probe.status == 200 and self.conn.sock is sock, f"{method} {path}: the probe needed a new connection"
        self.used = time.monotonic()
        return resp.status


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with running_rhetor(settings_for(tmp_path_factory.mktemp("fuzz"))) as url:
        c = Client(url)
        # A stored conversation and a template, so summarize/search/render reach their handlers' real work.
        c.check("POST", "/api/v1/chat", json.dumps({"message": "remember the fuzz", "context_id": CONTEXT}).encode())
        c.check("POST", "/api/v1/templates", json.dumps({"id": "fuzz-tpl", "text": "Hi {{ name }}"}).encode())
        yield c
        c.conn.close()


FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

valid_json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63, max_value=2**70)
                      | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
                      | st.sampled_from(["", "simulated", "\x00", "a" * 5000]))
scalars = valid_json_scalars | st.sampled_from([float("nan"), float("inf"), "\ud800"])  # not JSON: a 4xx
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                                            kids, max_size=4),
                           max_leaves=12)
options = st.dictionaries(st.sampled_from([*sorted(OPTION_KEYS), "top_k", "metadata", "extra"]), json_values,
                          max_size=4)


def _encode(value: Any) -> bytes:
    # json, not orjson: NaN/Infinity and lone surrogates come out as the non-standard text a careless client sends
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


@st.composite
def near_valid(draw: st.DrawFn, path: str) -> bytes:
    body = dict(BASES.get(path, CHAT))
    body.update(draw(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=3)))
    if draw(st.booleans()):
        body["options"] = draw(options)
    return _encode(body)


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_near_valid_bodies(client: Client, method: str, path: str) -> None:
    @FUZZ
    @given(body=near_valid(path))
    def run(body: bytes) -> None:
        client.check(method, _url(path), body)

    run()


# The bodies that carry `options` (native, legacy HTTP, summarize); every known key, often of the wrong type.
OPTION_ROUTES = ["/api/v1/chat", "/api/v1/chat/stream", "/message", "/stream", "/chat",
                 "/api/v1/contexts/{context_id:path}/summarize", "/contexts/{context_id:path}/summarize"]
confused = st.one_of(valid_json_scalars, st.lists(valid_json_scalars, max_size=3),
                     st.dictionaries(st.text(max_size=3), valid_json_scalars, max_size=2))
option_sets = st.fixed_dictionaries({}, optional={k: confused for k in sorted(OPTION_KEYS)})


def test_options_on_every_front(client: Client) -> None:
    assert {("POST", p) for p in OPTION_ROUTES} <= set(ROUTES)

    @settings(FUZZ, max_examples=80)
    @given(path=st.sampled_from(OPTION_ROUTES), opts=option_sets, streaming=st.booleans())
    def run(path: str, opts: dict[str, Any], streaming: bool) -> None:
        body = {**BASES.get(path, CHAT), "options": opts, "streaming": streaming}
        try:
            request_options(opts)
        except InvalidRequestError as exc:  # the oracle: the one edge check; the wire must say the same
            conn = client.conn
            conn.request("POST", _url(path), _encode(body), {"content-type": "application/json"})
            resp = conn.getresponse()
            text = resp.read().decode()
            assert resp.status == 400 and str(exc.param) in text, (path, opts, resp.status, text[:300])
        client.check("POST", _url(path), _encode(body))

    run()


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_random_bytes_and_content_types(client: Client, method: str, path: str) -> None:
    bodies = st.binary(max_size=300) | json_values.map(_encode)

    @FUZZ
    @given(body=bodies, content_type=st.sampled_from(CONTENT_TYPES))
    def run(body: bytes, content_type: str | None) -> None:
        client.check(method, _url(path), body, content_type)

    run()


def _nested(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


EDGES: list[tuple[str, bytes, str | None]] = [
    ("empty", b"", "application/json"),
    ("deep lists 10k", b"[" * 10_000 + b"]" * 10_000, "application/json"),
    ("deep objects 10k", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "application/json"),
    ("deep options 500", _encode({**CHAT, "options": {"extra": _nested(500)}, "variables": _nested(500)}),
     "application/json"),
    ("deep fields 500", _encode({k: _nested(500) for k in FIELDS}), "application/json"),
    # 1 MB where nothing echoes it back (the simulated reply quotes `message`: 200k stream frames would only be slow)
    ("huge strings", _encode({**CHAT, "message": "m" * 20_000, **{k: "y" * 1_000_000 for k in (
        "system_prompt", "query", "text", "input", "prompt")}}), "application/json"),
    ("huge list", _encode({**MESSAGES, "stop": ["s"] * 50_000, "options": {"stop": ["s"] * 50_000}}),
     "application/json"),
    ("over the body cap", b'{"message":"' + b"x" * (5 * 1024 * 1024) + b'"}', "application/json"),
    ("invalid utf-8", b'{"message":"\xff\xfe\xc3(","options":{"stop":["\xc0\xaf"]}}', "application/json"),
    ("lone surrogate", b'{"message":"\\ud800","context_id":"ergon:\\udfff","query":"\\ud800"}', "application/json"),
    ("nul bytes", _encode({"message": "a\x00b", "context_id": "ergon:\x00", "id": "\x00", "query": "\x00"}), None),
    ("nan and huge numbers", b'{"message":"hi","options":{"temperature":NaN,"max_tokens":1e999,"seed":-Infinity}}',
     "application/json"),
    ("form body", b"message=hi&options=1", "application/x-www-form-urlencoded"),
    ("json array", b'[{"message":"hi"}]', "application/json"),
    ("json scalar", b'"hi"', "text/plain"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_hostile_edge_bodies(client: Client, method: str, path: str) -> None:
    for name, body, content_type in EDGES:
        status = client.check(method, _url(path), body, content_type)
        assert status != 200 or name not in ("invalid utf-8", "over the body cap"), (name, status)


def test_websocket_survives_random_frames(client: Client) -> None:
    frames = st.one_of(json_values.map(_encode), st.binary(max_size=200),
                       st.fixed_dictionaries({"type": st.sampled_from(["CHAT", "GENERATE", "STREAM", "LLM_REQUEST",
                                                                       "CHAT_REQUEST", "CANCEL", "REGISTER"]),
                                              "request_id": json_values, "payload": json_values,
                                              "message": json_values, "options": options}).map(_encode))
    with connect(f"ws://{client.host}/ws", max_size=None) as ws:
        counter = iter(range(10**6))

        @FUZZ
        @given(frame=frames)
        def run(frame: bytes) -> None:
            ws.send(frame)
            marker = f"probe-{next(counter)}"
            ws.send(json.dumps({"type": "PING", "request_id": marker}))
            while True:  # replies to the fuzz frame may come first; the socket must stay open to the PONG
                reply = json.loads(ws.recv(timeout=30))
                if reply.get("type") == "PONG" and reply.get("request_id") == marker:
                    break

        run()
