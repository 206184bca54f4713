"""A loopback OpenTelemetry collector: a real HTTP server on 127.0.0.1 that takes OTLP/HTTP trace exports
(`POST /v1/traces`, `application/x-protobuf`, optionally gzip), decodes them with opentelemetry-proto and keeps
every span as a plain dict {name, kind, trace_id, span_id, parent_span_id, attributes, status}.
Answers an empty ExportTraceServiceResponse, as a collector does. Knows nothing of Rhetor.

Also runnable for benchmarks: `python -m tests.fakes.otlp PORT` serves until killed, counting spans.
"""

from __future__ import annotations

import gzip
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.fakes.script import read_body, send_bytes
from tests.fakes.server import serve_app

KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, which) if which else None


class FakeCollector:
    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.exports = 0
        self.content_types: list[str] = []
        self._lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if scope["path"] != "/v1/traces" or scope["method"] != "POST":
            await send_bytes(send, 404, b"not found", b"text/plain")
            return
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self._lock:
            self.exports += 1
            self.content_types.append(headers.get("content-type", ""))
            for resource_spans in request.resource_spans:
                resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for s in scope_spans.spans:
                        self.spans.append({
                            "name": s.name, "kind": KINDS.get(s.kind, str(s.kind)),
                            "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                            "parent_span_id": s.parent_span_id.hex() or None,
                            "attributes": {a.key: _value(a.value) for a in s.attributes},
                            "status": s.status.code, "resource": resource,
                            "scope": scope_spans.scope.name,
                        })
        await send_bytes(send, 200, ExportTraceServiceResponse().SerializeToString(), b"application/x-protobuf")

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The spans once `predicate(spans)` holds (exports are batched, on the exporter's thread)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                spans = list(self.spans)
            if predicate(spans):
                return spans
            time.sleep(0.05)
        raise AssertionError(f"collector: condition not met in {timeout}s; got {[s['name'] for s in spans]}")


@contextmanager
def running_collector() -> Iterator[tuple[FakeCollector, str]]:
    """(collector, base URL); the traces endpoint is base + /v1/traces."""
    collector = FakeCollector()
    with serve_app(collector) as url:
        yield collector, url


if __name__ == "__main__":  # benchmarks: a collector on a fixed port until killed
    import uvicorn

    uvicorn.run(FakeCollector(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")


__all__ = ["FakeCollector", "running_collector"]
