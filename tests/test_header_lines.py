"""A limited key's six x-ratelimit-* headers as one block of header lines (rhetor.api.header_lines): the limiter's
block is exactly its Verdict's pairs; FastHeadCycle writes a block in its place, the same bytes as the pairs,
and falls back to uvicorn's send with the pairs; Rhetor's own server (our protocol, which offers the extension)
sends the six headers exactly, in order, between the app's headers and x-request-id, as plain uvicorn does; and
an ASGI server that is not ours (Starlette's TestClient, httpx's ASGITransport) gets the six ordinary pairs."""

from __future__ import annotations

import asyncio
import dis
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.testclient import TestClient
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from rhetor.api import head, header_lines
from rhetor.api.app import create_app
from rhetor.api.head import FastHeadCycle
from rhetor.api.protocols import ConnectionLimits, http_protocol
from rhetor.governance.limits import InProcessLimiter
from tests.conftest import test_settings as settings_for
from tests.fakes import cycle
from tests.fakes.server import free_port

ADMIN = "admin-secret-0123456789"
NAMES = [b"x-ratelimit-limit-requests", b"x-ratelimit-remaining-requests", b"x-ratelimit-reset-requests",
         b"x-ratelimit-limit-tokens", b"x-ratelimit-remaining-tokens", b"x-ratelimit-reset-tokens"]
CHAT = b'{"model": "simulated/simulated-fast", "messages": [{"role": "user", "content": "hi"}]}'


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def as_lines(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(b"\r\n%s: %s" % (name, value) for name, value in pairs)


@pytest.mark.parametrize(("rpm", "tpm"), [(3, 500), (3, None), (None, 500), (None, None), (10**9, 10**12)])
def test_the_block_is_the_verdicts_headers_exactly(rpm: int | None, tpm: int | None) -> None:
    """`take_lines`, `check` and `take` on triplet limiters, through a minute: the same admissions and the same
    headers, order and text (remaining counts down to 0, the tokens' reset from the table and, under 2 s, from
    Window.reset)."""
    clocks = Clock(1000.25), Clock(1000.25), Clock(1000.25)
    fast, slow, taking = (InProcessLimiter(clock) for clock in clocks)
    steps = [(0, 0), (0.5, 40), (58.5, 0), (1, 0), (58.3, 7), (0.6, 0), (61, 0), (0, 0), (0, 0), (0, 0), (0, 900)]
    blocks, refused = [], 0
    for step, (advance, used) in enumerate(steps):
        for clock in clocks:
            clock.now += advance
        for limiter in (fast, slow, taking):
            limiter.consume("k", used)
        block = fast.take_lines("k", rpm, tpm, 30)
        verdict = slow.check("k", rpm, tpm, 30)
        pairs = taking.take("k", rpm, tpm, 30)
        if not verdict.allowed:
            assert block is None and pairs is None, step
            refused += 1
            continue
        assert block == as_lines(verdict.headers) and pairs == verdict.headers, step
        blocks.append(block)
        assert header_lines.pairs(block) == verdict.headers
        for limiter in (fast, taking):
            limiter.release("k", 30 if tpm is not None else 0)
        slow.release("k", verdict.reserved)
    if rpm == 3:  # counted down to 0, then refused
        assert b"\r\nx-ratelimit-remaining-requests: 0\r\n" in b"".join(blocks) and refused >= 2
    if tpm == 500:  # 900 tokens used: refused
        assert refused >= 1 and any(b"x-ratelimit-reset-tokens: 1m0s" in block for block in blocks)
        assert b"x-ratelimit-reset-tokens: 750ms" in blocks[2]  # under 2 s: Window.reset


def test_pairs_and_plain() -> None:
    pairs = [(b"x-a", b"1"), (b"x-b", b"1m0s"), (b"x-c", b"")]
    assert header_lines.pairs(as_lines(pairs)) == pairs and header_lines.pairs(b"") == []
    mixed = [(b"content-type", b"a/b"), (header_lines.NAME, as_lines(pairs)), (b"x-d", b"2")]
    assert header_lines.plain(mixed) == [(b"content-type", b"a/b"), *pairs, (b"x-d", b"2")]
    scope: dict[str, Any] = {}
    assert not header_lines.offered(scope)
    header_lines.offer(scope)
    assert header_lines.offered(scope)
    scope = {"extensions": {"http.response.trailers": {}}}
    header_lines.offer(scope)
    assert set(scope["extensions"]) == {"http.response.trailers", header_lines.EXTENSION}


# -- FastHeadCycle, driven by hand -------------------------------------------------------------------------------
LIMITS = [(b"x-ratelimit-limit-requests", b"100"), (b"x-ratelimit-remaining-requests", b"99"),
          (b"x-ratelimit-reset-requests", b"1m0s"), (b"x-ratelimit-limit-tokens", b"5000"),
          (b"x-ratelimit-remaining-tokens", b"4980"), (b"x-ratelimit-reset-tokens", b"59s")]
BLOCK = (header_lines.NAME, as_lines(LIMITS))


def start(cls: type[RequestResponseCycle], headers: list[Any]) -> tuple[list[bytes], str]:
    """What a cycle of `cls` writes and raises for one response start with these headers."""
    return cycle.start(cls, headers, [(b"server", b"uvicorn")])


def test_a_block_is_written_in_its_place_as_its_pairs_would_be() -> None:
    before, after = [(b"content-type", b"application/json"), (b"content-length", b"2")], [(b"x-request-id", b"r1")]
    written = start(FastHeadCycle, [*before, BLOCK, *after])
    assert written == start(FastHeadCycle, [*before, *LIMITS, *after])
    assert written == start(RequestResponseCycle, [*before, *LIMITS, *after])
    assert written[0][0].startswith(b"HTTP/1.1 200 OK\r\nserver: uvicorn\r\ncontent-type: application/json\r\n"
                                    b"content-length: 2\r\nx-ratelimit-limit-requests: 100\r\n")
    # unusual starts go to uvicorn's own send, given the pairs: a second block, a bad value beside a block
    assert start(FastHeadCycle, [BLOCK, *before, BLOCK]) == start(RequestResponseCycle, [*LIMITS, *before, *LIMITS])
    bad = [*before, BLOCK, (b"x-bad", b"a\nb")]
    verdict = start(FastHeadCycle, bad)
    assert verdict == start(RequestResponseCycle, [*before, *LIMITS, (b"x-bad", b"a\nb")])
    assert verdict[0] == [] and "Invalid HTTP header value" in verdict[1]
    # uvicorn's own cycle never takes a block: its name is no header name
    assert "Invalid HTTP header name" in start(RequestResponseCycle, [BLOCK])[1]


def test_the_fall_back_gets_the_pairs_of_a_one_shot_iterator() -> None:
    message: Any = {"type": "http.response.start", "status": 200, "headers": iter([(b"x-a", b"1"), BLOCK])}
    assert head._plain(message)["headers"] == [(b"x-a", b"1"), *LIMITS]
    odd: Any = {"type": "http.response.start", "status": 200, "headers": [(b"x-a",)]}
    assert head._plain(odd)["headers"] == [(b"x-a",)]  # not pairs: left for uvicorn's send to refuse


def test_the_head_loop_has_no_extended_arg() -> None:
    """FastHeadCycle._start's loop must stay under 256 code units: past that its FOR_ITER (and the jump back) take
    an EXTENDED_ARG, run on every header (+0.4k instructions a response: benchmarks/response_head.py)."""
    code = list(dis.get_instructions(FastHeadCycle._start))
    loops = [i for i, ins in enumerate(code) if ins.opname == "FOR_ITER"]
    assert loops and all(code[i - 1].opname != "EXTENDED_ARG" for i in loops)


# -- the whole app ----------------------------------------------------------------------------------------------
class Spy:
    """The in-process limiter, noting which of its answers the key middleware asked for."""

    def __init__(self, limiter: InProcessLimiter) -> None:
        self.limiter = limiter
        self.asked: list[str] = []

    def take(self, *args: Any) -> Any:
        self.asked.append("take")
        return self.limiter.take(*args)

    def take_lines(self, *args: Any) -> Any:
        self.asked.append("take_lines")
        return self.limiter.take_lines(*args)

    def release(self, *args: Any) -> None:
        self.limiter.release(*args)


@contextmanager
def serving(tmp_path: Path, ours: bool) -> Iterator[tuple[int, Spy]]:
    """Rhetor (an admin key, simulated providers) on a free port: uvicorn with Rhetor's protocol, or uvicorn's."""
    app = create_app(settings_for(tmp_path, admin_key=ADMIN))
    access = app.state.governance.access
    spy = access.in_process = Spy(access.in_process)
    port = free_port()
    http: Any = http_protocol(ConnectionLimits(10.0, 10.0, 100)) if ours else "httptools"
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", http=http,
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield port, spy
    finally:
        server.should_exit = True
        thread.join(5)


def new_key(client: httpx.Client | TestClient) -> str:
    r = client.post("/api/v1/keys", json={"name": "lines", "rpm": 50, "tpm": 100000},
                    headers={"authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 201, r.text
    secret: str = r.json()["secret"]
    return secret


def raw_head(port: int, secret: str) -> bytes:
    """One chat completion over a raw socket: the response head's bytes as they came."""
    async def ask() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"authorization: Bearer %s\r\ncontent-length: %d\r\n\r\n%s" % (secret.encode(), len(CHAT), CHAT))
        head_bytes = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.close()
        return head_bytes
    return asyncio.run(ask())


def the_six(pairs: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The six x-ratelimit-* headers, checked to be together and in order, the reset of the tokens masked."""
    names = [name for name, _ in pairs]
    at = names.index(NAMES[0])
    six = pairs[at:at + 6]
    assert [name for name, _ in six] == NAMES
    assert names[at + 6] == b"x-request-id"  # then GatewayMiddleware's own, as ever
    return [(name, b"-" if name == NAMES[5] else value) for name, value in six]


EXPECTED = [(b"x-ratelimit-limit-requests", b"50"), (b"x-ratelimit-remaining-requests", b"49"),
            (b"x-ratelimit-reset-requests", b"1m0s"), (b"x-ratelimit-limit-tokens", b"100000"),
            (b"x-ratelimit-remaining-tokens", b"%d" % (100000 - len(CHAT) // 4)), (NAMES[5], b"-")]


def test_rhetors_server_sends_the_six_headers_exactly(tmp_path: Path) -> None:
    heads = {}
    for ours in (True, False):
        with serving(tmp_path / str(ours), ours) as (port, spy), \
                httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            secret = new_key(client)
            heads[ours] = raw_head(port, secret)
            assert spy.asked == ["take_lines" if ours else "take"]  # our protocol: the block, as it is
    for ours, head_bytes in heads.items():
        lines = head_bytes.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 200 OK", ours
        pairs = [tuple(line.split(b": ", 1)) for line in lines[1:-2]]
        assert the_six(pairs) == EXPECTED, ours  # type: ignore[arg-type]
        assert b"\r\nx-ratelimit-reset-tokens: 0s\r\nx-request-id: " in head_bytes  # no tokens used yet
    names = {ours: [line.split(b":")[0] for line in h.split(b"\r\n")[1:-2]] for ours, h in heads.items()}
    assert names[True] == names[False]  # every header in the same order as plain uvicorn sends them


def test_other_asgi_servers_get_ordinary_pairs(tmp_path: Path) -> None:
    with TestClient(create_app(settings_for(tmp_path / "tc", admin_key=ADMIN))) as client:  # Starlette's
        secret = new_key(client)
        r = client.post("/v1/chat/completions", content=CHAT, headers={"authorization": f"Bearer {secret}",
                                                                       "content-type": "application/json"})
        assert r.status_code == 200, r.text
        assert the_six(r.headers.raw) == EXPECTED

    async def over_asgi_transport() -> list[tuple[bytes, bytes]]:  # httpx's (the lifespan run by hand)
        app = create_app(settings_for(tmp_path / "asgi", admin_key=ADMIN))
        async with app.router.lifespan_context(app), \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
            r = await c.post("/api/v1/keys", json={"name": "lines", "rpm": 50, "tpm": 100000},
                             headers={"authorization": f"Bearer {ADMIN}"})
            answer = await c.post("/v1/chat/completions", content=CHAT, headers={
                "authorization": f"Bearer {r.json()['secret']}", "content-type": "application/json"})
            assert answer.status_code == 200, answer.text
            return answer.headers.raw

    assert the_six(asyncio.run(over_asgi_transport())) == EXPECTED
