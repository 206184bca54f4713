"""An unexpected exception in a route is a 500 in a shape every front parses, logged with the request id, and the
caller's keep-alive connection survives it (uvicorn drops a connection whose app raised after answering)."""

from __future__ import annotations

import http.client
from collections.abc import Callable
from urllib.parse import urlparse

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rhetor.api.app import create_app
from rhetor.settings import Settings
from tests.fakes.server import serve_app


async def _boom(request: Request) -> Response:
    raise RuntimeError("a bug no body should reach")


def test_an_unexpected_error_is_a_500_and_the_connection_survives(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings())
    app.router.routes.insert(0, Route("/boom", _boom, methods=["POST"]))
    with serve_app(app, lifespan="on") as url:
        conn = http.client.HTTPConnection(urlparse(url).netloc, timeout=5)
        conn.request("POST", "/boom", body=b"{}")
        r = conn.getresponse()
        body = orjson.loads(r.read())
        assert r.status == 500
        assert body["error"]["type"] == "internal_error" and "request" in body["error"]["message"]
        assert "a bug" not in r.getheader("content-type", "") + str(body)  # no exception text leaks
        sock = conn.sock
        conn.request("GET", "/health")  # the same keep-alive socket serves the next request
        r2 = conn.getresponse()
        r2.read()
        assert r2.status == 200 and conn.sock is sock
        conn.close()
