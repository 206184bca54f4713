"""OpenTelemetry traces (issue 10 item 2): one trace per request with the front's SERVER span, rhetor.chat,
routing, template rendering, context load/store, each attempt (GenAI CLIENT span) and the upstream HTTP call;
the caller's traceparent is honoured and the upstream sees ours plus x-request-id; content only on request;
export to the SDK's in-memory exporter and over OTLP/HTTP to a loopback collector; off = no SDK loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("opentelemetry.sdk", reason="the 'otel' extra (opentelemetry-sdk) is not installed")

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from rhetor.api.app import create_app
from rhetor.settings import Settings
from tests.fakes.openai import FakeOpenAI, running_fake_openai
from tests.fakes.otlp import running_collector
from tests.fakes.server import serve_app

ROOT = Path(__file__).resolve().parent.parent
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with running_fake_openai() as f:
        yield f


@contextmanager
def traced(settings: Settings) -> Iterator[tuple[str, InMemorySpanExporter]]:
    app = create_app(settings)
    exporter = InMemorySpanExporter()
    assert app.state.tracing is not None
    app.state.tracing.add_exporter(exporter)
    with serve_app(app, lifespan="on") as url:
        yield url, exporter


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def one(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = by_name(spans, name)
    assert len(found) == 1, f"{name}: {[s.name for s in spans]}"
    return found[0]


def wait_spans(exporter: InMemorySpanExporter, predicate: Callable[[tuple[ReadableSpan, ...]], bool]
               ) -> tuple[ReadableSpan, ...]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        spans = exporter.get_finished_spans()
        if predicate(spans):
            return spans
        time.sleep(0.02)
    raise AssertionError([s.name for s in exporter.get_finished_spans()])


def openai_settings(make_settings: Callable[..., Settings], fake: FakeOpenAI, **kw: Any) -> Settings:
    return make_settings(otel=True, otel_exporter="none", openai_api_key="sk-test", openai_base_url=fake.base_url,
                         **kw)


def test_native_chat_trace_spans_attributes_and_propagation(make_settings: Callable[..., Settings],
                                                            fake: FakeOpenAI) -> None:
    with traced(openai_settings(make_settings, fake)) as (url, exporter):
        before = len(fake.headers)
        r = httpx.post(url + "/api/v1/chat", timeout=10,
                       headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", "tracestate": "vendor=abc"},
                       json={"message": "hello there", "provider_id": "openai", "model_id": "gpt-4o",
                             "context_id": "trace-ctx-1", "options": {"temperature": 0.25, "max_tokens": 50}})
        assert r.status_code == 200, r.text
        spans = wait_spans(exporter, lambda s: any(x.kind == SpanKind.SERVER for x in s))
    assert {s.context.trace_id for s in spans} == {int(CALLER_TRACE, 16)}  # one trace: the caller's
    server = [s for s in spans if s.kind == SpanKind.SERVER]
    assert len(server) == 1  # exactly one SERVER span (FastAPI's own is off)
    srv = server[0]
    assert srv.parent is not None and srv.parent.span_id == int(CALLER_SPAN, 16) and srv.parent.is_remote
    assert srv.name == "POST /api/v1/chat" and srv.attributes["http.route"] == "/api/v1/chat"
    assert srv.attributes["http.response.status_code"] == 200
    assert srv.attributes["rhetor.request_id"] == r.headers["x-request-id"]

    chat = one(spans, "rhetor.chat")
    assert chat.parent is not None and chat.parent.span_id == srv.context.span_id
    a = chat.attributes
    assert a["gen_ai.operation.name"] == "chat" and a["rhetor.front"] == "native"
    assert a["gen_ai.request.model"] == "gpt-4o" and a["gen_ai.response.model"] == "gpt-4o"
    assert a["gen_ai.system"] == "openai" and a["gen_ai.conversation.id"] == "trace-ctx-1"
    assert a["gen_ai.request.temperature"] == 0.25 and a["gen_ai.request.max_tokens"] == 50
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a  # no content by default

    for name in ("rhetor.route", "rhetor.context.load", "rhetor.context.store"):
        child = one(spans, name)
        assert child.parent is not None and child.parent.span_id == chat.context.span_id, name
    assert one(spans, "rhetor.route").attributes["rhetor.route.targets"][0] == "openai/gpt-4o"
    assert one(spans, "rhetor.context.store").attributes["rhetor.context.status"] == "complete"

    attempt = one(spans, "chat gpt-4o")
    assert attempt.kind == SpanKind.CLIENT and attempt.parent is not None
    assert attempt.parent.span_id == chat.context.span_id
    assert attempt.attributes["gen_ai.provider.name"] == "openai"
    assert attempt.attributes["gen_ai.usage.output_tokens"] == a["gen_ai.usage.output_tokens"]
    http = one(spans, "POST")
    assert http.kind == SpanKind.CLIENT and http.parent is not None
    assert http.parent.span_id == attempt.context.span_id
    assert http.attributes["url.full"] == fake.base_url + "/chat/completions"
    assert http.attributes["http.response.status_code"] == 200

    # the upstream saw our trace context (its parent = the HTTP client span) and the request id
    sent = fake.headers[before]
    assert sent["traceparent"] == f"00-{CALLER_TRACE}-{http.context.span_id:016x}-01"
    assert sent["tracestate"] == "vendor=abc"
    assert sent["x-request-id"] == r.headers["x-request-id"]


def test_stream_retry_and_content_capture(make_settings: Callable[..., Settings], fake: FakeOpenAI) -> None:
    with traced(openai_settings(make_settings, fake, otel_capture_content=True)) as (url, exporter):
        fake.fail_next(503)  # the first attempt fails, the retry answers
        with httpx.stream("POST", url + "/v1/chat/completions", timeout=10,
                          json={"model": "openai/gpt-4o-mini", "stream": True,
                                "messages": [{"role": "system", "content": "be brief"},
                                             {"role": "user", "content": "secret question"}]}) as r:
            assert r.status_code == 200
            body = "".join(r.iter_text())
        assert "[DONE]" in body
        spans = wait_spans(exporter, lambda s: any(x.kind == SpanKind.SERVER for x in s))
    attempts = by_name(spans, "chat gpt-4o-mini")
    assert len(attempts) == 2
    failed, ok = sorted(attempts, key=lambda s: s.start_time or 0)
    assert failed.status.status_code == StatusCode.ERROR and failed.attributes["rhetor.attempt.retry"] == 0
    assert failed.attributes["error.type"] == "upstream_status_error" or "error.type" in failed.attributes
    assert ok.status.status_code != StatusCode.ERROR and ok.attributes["rhetor.attempt.retry"] == 1
    chat = one(spans, "rhetor.chat")
    assert chat.attributes["rhetor.front"] == "openai" and chat.attributes["rhetor.stream.status"] == "complete"
    assert chat.attributes["rhetor.attempts"] == 2
    assert chat.attributes["gen_ai.usage.output_tokens"] > 0
    # capture on: the prompt (system apart) and the streamed completion are on the chat span
    sent = json.loads(str(chat.attributes["gen_ai.input.messages"]))
    assert sent == [{"role": "user", "parts": [{"type": "text", "content": "secret question"}]}]
    assert "be brief" in str(chat.attributes["gen_ai.system_instructions"])
    out = json.loads(str(chat.attributes["gen_ai.output.messages"]))
    assert out[0]["parts"][0]["content"] == fake.reply_text
    # the upstream HTTP span of the streamed answer ended with the stream, under the successful attempt
    https = [s for s in by_name(spans, "POST") if s.parent and s.parent.span_id == ok.context.span_id]
    assert len(https) == 1 and https[0].attributes["http.response.status_code"] == 200
    server = [s for s in spans if s.kind == SpanKind.SERVER]
    assert len(server) == 1 and (server[0].end_time or 0) >= (chat.end_time or 0)


def test_template_render_span_and_error_status(make_settings: Callable[..., Settings], fake: FakeOpenAI) -> None:
    with traced(openai_settings(make_settings, fake)) as (url, exporter):
        r = httpx.post(url + "/api/v1/chat", timeout=10,
                       json={"template_id": "task.summarize", "variables": {"text": "the minutes", "max_words": 5},
                             "provider_id": "simulated", "model_id": "simulated-fast"})
        assert r.status_code == 200, r.text
        bad = httpx.post(url + "/api/v1/chat", timeout=10, json={"message": "x", "options": {"temperature": "hot"}})
        assert bad.status_code == 400
        spans = wait_spans(exporter, lambda s: len([x for x in s if x.kind == SpanKind.SERVER]) == 2)
    render = one(spans, "rhetor.template.render")
    assert render.attributes["rhetor.template.id"] == "task.summarize"
    chats = by_name(spans, "rhetor.chat")
    assert len(chats) == 2
    assert {c.context.trace_id for c in chats} == {s.context.trace_id for s in spans if s.kind == SpanKind.SERVER}
    failed = next(c for c in chats if c.status.status_code == StatusCode.ERROR)
    assert failed.attributes["error.type"] == "invalid_request_error"
    assert next(c for c in chats if c is not failed).attributes["gen_ai.system"] == "rhetor.simulated"


def test_otlp_export_to_a_loopback_collector(make_settings: Callable[..., Settings]) -> None:
    with running_collector() as (collector, base):
        settings = make_settings(otel_endpoint=base + "/v1/traces")
        with serve_app(create_app(settings), lifespan="on") as url:
            r = httpx.post(url + "/api/v1/chat", timeout=10, json={"message": "hi", "provider_id": "simulated"})
            assert r.status_code == 200
        # the app's shutdown flushed the batch: the collector decoded it
        spans = collector.wait_for(lambda s: any(x["kind"] == "server" for x in s))
    assert collector.content_types[0] == "application/x-protobuf"
    server = next(s for s in spans if s["kind"] == "server")
    chat = next(s for s in spans if s["name"] == "rhetor.chat")
    assert chat["trace_id"] == server["trace_id"] and chat["parent_span_id"] == server["span_id"]
    assert chat["attributes"]["gen_ai.system"] == "rhetor.simulated"
    assert chat["attributes"]["gen_ai.usage.output_tokens"] > 0
    assert server["resource"]["service.name"] == "rhetor" and server["scope"] == "rhetor"
    assert server["attributes"]["rhetor.request_id"] == r.headers["x-request-id"]


def test_settings_from_standard_otel_variables() -> None:
    s = Settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318/"})
    assert s.otel_endpoint == "http://127.0.0.1:4318/v1/traces" and s.otel is None
    s = Settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318",
                           "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:9/traces"})
    assert s.otel_endpoint == "http://b:9/traces"
    s = Settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_SDK_DISABLED": "true"})
    assert s.otel is False
    s = Settings.from_env({"RHETOR_OTEL": "1", "RHETOR_OTEL_CAPTURE_CONTENT": "1", "OTEL_TRACES_EXPORTER": "console"})
    assert s.otel is True and s.otel_capture_content and s.otel_exporter == "console"


_OFF_SCRIPT = """
import sys, tempfile, httpx
from rhetor.api.app import create_app
from rhetor.settings import Settings
from tests.fakes.server import serve_app
app = create_app(Settings(data_dir=tempfile.mkdtemp(), embedder="none", simulated_delay_scale=0))
with serve_app(app, lifespan="on") as url:
    r = httpx.post(url + "/api/v1/chat", json={"message": "hi", "provider_id": "simulated"}, timeout=10)
    assert r.status_code == 200, r.text
loaded = sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter",
                                                         "rhetor.observability.otel")))
print("LOADED", loaded, app.state.tracing)
"""

_GLOBAL_SCRIPT = """
import tempfile, httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rhetor.api.app import create_app
from rhetor.settings import Settings
from tests.fakes.server import serve_app
glob = InMemorySpanExporter()   # as under `opentelemetry-instrument`: a process-global provider is set
provider = TracerProvider(); provider.add_span_processor(SimpleSpanProcessor(glob)); trace.set_tracer_provider(provider)
app = create_app(Settings(data_dir=tempfile.mkdtemp(), embedder="none", simulated_delay_scale=0, otel=True,
                          otel_exporter="none"))
ours = InMemorySpanExporter(); app.state.tracing.add_exporter(ours)
with serve_app(app, lifespan="on") as url:
    r = httpx.post(url + "/api/v1/chat", json={"message": "hi", "provider_id": "simulated"}, timeout=10)
    assert r.status_code == 200, r.text
servers = lambda e: len([s for s in e.get_finished_spans() if s.kind == trace.SpanKind.SERVER])
print("SERVER", servers(ours) + servers(glob))
"""


def _run(script: str, **env: str) -> str:
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_off_loads_no_sdk() -> None:
    """Without an endpoint nothing of the SDK or the exporter is imported, and no tracing object exists."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", _OFF_SCRIPT], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "LOADED [] None" in out.stdout


def test_one_server_span_even_with_a_global_provider() -> None:
    """FastAPI 0.165 makes its own SERVER span whenever a global provider is set; Rhetor switches it off."""
    assert "SERVER 1" in _run(_GLOBAL_SCRIPT)


def test_websocket_requests_are_traces_of_their_own(make_settings: Callable[..., Settings]) -> None:
    """No connection-long span: each request on a socket is its own trace, rooted at its rhetor.chat span."""
    from websockets.sync.client import connect

    with traced(make_settings(otel=True, otel_exporter="none")) as (url, exporter):
        with connect(url.replace("http://", "ws://") + "/ws") as ws:
            for rid in ("w1", "w2"):
                ws.send(json.dumps({"type": "STREAM", "request_id": rid, "prompt": f"prompt {rid}",
                                    "options": {"provider": "simulated"}}))
                while not (frame := json.loads(ws.recv(timeout=10)))["done"]:
                    assert frame["type"] == "CHUNK"
        spans = wait_spans(exporter, lambda s: len(by_name(s, "rhetor.chat")) == 2)
    chats = by_name(spans, "rhetor.chat")
    assert all(c.parent is None for c in chats) and len({c.context.trace_id for c in chats}) == 2
    assert {c.attributes["rhetor.request_id"] for c in chats} == {"w1", "w2"}
    assert all(c.attributes["rhetor.stream.status"] == "complete" for c in chats)
    assert not [s for s in spans if s.kind == SpanKind.SERVER]


def test_a_bad_endpoint_refuses_to_start_naming_the_variable(make_settings: Callable[..., Settings]) -> None:
    from rhetor.errors import ConfigError

    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_ENDPOINT: 'localhost:4318/v1/traces'"):
        create_app(make_settings(otel_endpoint="localhost:4318/v1/traces"))
