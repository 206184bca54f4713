"""Header lines: some of a response's headers handed to the server as one pre-built block of wire bytes
(b"\r\nname: value\r\nname: value"), written as it is, instead of as (name, value) pairs the server looks up and
checks one by one. Used for the six `x-ratelimit-*` headers of a limited caller key (~1k instructions a header in
the server, each looked up, checked and copied; benchmarks/README.md, "Round 9, rate-limit header block").

The hand-over is an ASGI scope extension, so no other server ever sees a block:
- the server offers it: rhetor.api.protocols' HTTP protocol puts EXTENSION in `scope["extensions"]` when its
  response cycles are rhetor.api.head.FastHeadCycle, which writes the block in its place among the headers;
- the app takes the offer: a block travels in the start message's headers as ONE pair (NAME, block), at the
  place of the headers it stands for (order on the wire unchanged), only when `offered(scope)`; under any other
  server (uvicorn's own protocols, hypercorn, httpx's ASGITransport, Starlette's TestClient) the app hands
  the ordinary pairs instead (the rate limits: InProcessLimiter.take's pairs, where the block is `take_lines`');
- NAME is no valid header name (a space and parentheses) and a block holds CR LF: if a block ever reached a
  server that did not offer the extension, that server refuses the response loudly (uvicorn: "Invalid HTTP
  header name"); FastHeadCycle's fall-back to uvicorn's own send gives it `plain(headers)`.
A block must be valid by construction (our own names; values of digits and fixed text): the server does not
check it. Knows the ASGI scope and HTTP's header syntax; nothing of uvicorn, governance or routes.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

EXTENSION = "rhetor.header_lines"  # scope["extensions"] key: the server writes a (NAME, block) pair as it is
NAME = b"(header lines)"  # the name of the pair that carries a block


def offer(scope: MutableMapping[str, Any]) -> None:
    """The server's side: say in `scope` that a (NAME, block) pair will be written as it is."""
    extensions = scope.get("extensions")
    if extensions is None:
        scope["extensions"] = {EXTENSION: {}}
    else:
        extensions[EXTENSION] = {}


def offered(scope: MutableMapping[str, Any]) -> bool:
    """The app's side: whether this request's server writes a block as it is."""
    extensions = scope.get("extensions")
    return extensions is not None and EXTENSION in extensions


def pairs(block: bytes) -> list[tuple[bytes, bytes]]:
    """A block as the ordinary (name, value) pairs it stands for, in order."""
    out: list[tuple[bytes, bytes]] = []
    for line in block.split(b"\r\n")[1:]:
        name, _, value = line.partition(b": ")
        out.append((name, value))
    return out


def plain(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` with every (NAME, block) pair replaced by the pairs of its block."""
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name == NAME:
            out += pairs(value)
        else:
            out.append((name, value))
    return out


__all__ = ["EXTENSION", "NAME", "offer", "offered", "pairs", "plain"]
