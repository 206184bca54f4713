"""A uvicorn response cycle driven by hand, without a socket: what a cycle class (uvicorn's own or Rhetor's
FastHeadCycle) writes and raises for one `http.response.start`. Shared by the response-head tests."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle


class Recording:
    """A transport that keeps what is written to it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        self.writes.append(b"<close>")


def start(cls: type[RequestResponseCycle], headers: Any,
          default_headers: list[tuple[bytes, bytes]] | None = None) -> tuple[list[bytes], str]:
    """(the writes, "" or the error as `Type: message`) of one response start with `headers`, the server's
    `default_headers` (e.g. `server: uvicorn`) first."""
    transport: Any = Recording()
    logger = logging.getLogger("tests.cycle")
    scope: Any = {"type": "http", "method": "GET", "http_version": "1.1"}
    cycle = cls(scope, transport, FlowControl(transport), logger, logger, False, default_headers or [],
                asyncio.Event(), False, True, lambda: None)
    try:
        cycle.send({"type": "http.response.start", "status": 200, "headers": headers}).send(None)
    except StopIteration:
        pass
    except (RuntimeError, TypeError, ValueError) as exc:
        return transport.writes, f"{type(exc).__name__}: {exc}"
    return transport.writes, ""
