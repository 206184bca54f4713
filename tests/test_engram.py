"""The Engram mirror against a fake Engram that is down, then slow, then up: requests never wait for it,
health says when it is unreachable, and once it is back every context reaches it. SQLite stays the truth."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rhetor.context import NewMessage, SqliteContextStore
from rhetor.context.engram import NAMESPACE, EngramMirror
from rhetor.settings import Settings
from tests.fakes.engram import FakeEngram
from tests.fakes.server import free_port, serve_app


@pytest.fixture
def engram() -> Iterator[tuple[FakeEngram, str]]:
    fake = FakeEngram(mode="down", slow_s=1.0)
    with serve_app(fake.app) as url:
        yield fake, url


async def until(cond: Callable[[], Any], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_down_slow_up(engram: tuple[FakeEngram, str], tmp_path: Path) -> None:
    fake, url = engram
    store = EngramMirror(SqliteContextStore(tmp_path / "db"), url, timeout_s=0.2, retry_base_s=0.02,
                         retry_max_s=0.1)
    await store.open()
    try:
        started = time.monotonic()
        await store.append_turn("ergon:a", [NewMessage("user", "hi"), NewMessage("assistant", "hello")])
        assert time.monotonic() - started < 0.5  # the write never waits for Engram
        await until(lambda: store.status()["state"] == "unreachable")
        assert store.status()["pending"] == 1 and "503" in str(store.status()["last_error"])

        fake.mode = "slow"  # slower than the 0.2 s timeout: still unreachable, still not blocking
        attempts = fake.attempts
        started = time.monotonic()
        await store.append_turn("ergon:b", [NewMessage("user", "second")])
        assert time.monotonic() - started < 0.5
        await until(lambda: fake.attempts > attempts + 1)
        assert store.status()["state"] == "unreachable" and store.status()["pending"] == 2

        fake.mode = "up"
        await until(lambda: store.status()["pending"] == 0, within=15)
        assert store.status()["state"] == "ok" and store.status()["mirrored"] == 2
        saved = json.loads(fake.stored[(NAMESPACE, "ergon:a")])
        assert [m["content"] for m in saved["messages"]] == ["hi", "hello"]
        assert (NAMESPACE, "ergon:b") in fake.stored
        assert [m.content for m in await store.history("ergon:a")] == ["hi", "hello"]  # SQLite is the truth
    finally:
        await store.close()


async def test_bounded_queue_drops_and_counts(tmp_path: Path) -> None:
    store = EngramMirror(SqliteContextStore(tmp_path / "db"), f"http://127.0.0.1:{free_port()}", queue_max=2,
                         timeout_s=0.2, retry_base_s=5)
    await store.open()
    try:
        for i in range(5):
            await store.append_turn(f"c{i}", [NewMessage("user", "x")])
            await store.append_turn(f"c{i}", [NewMessage("user", "y")])  # de-duplicated while pending
        status = store.status()
        assert status["pending"] == 2 and status["dropped"] == 6  # c2..c4 refused twice each
        assert len(await store.list_contexts()) == 5
    finally:
        await store.close(flush_s=0.1)


def test_through_the_app(engram: tuple[FakeEngram, str], make_settings: Callable[..., Settings], rhetor: Any) -> None:
    fake, url = engram
    fake.mode = "up"
    with rhetor(make_settings(engram_url=url)) as base, httpx.Client(base_url=base) as c:
        r = c.post("/api/v1/chat", json={"message": "remember me", "context_id": "terma:e"})
        assert r.status_code == 200
        deadline = time.monotonic() + 10
        while (NAMESPACE, "terma:e") not in fake.stored:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        health = c.get("/health").json()
        assert {"name": "engram", "required": False, "status": "ok", "url": url} in health["dependencies"]
        assert health["details"]["engram"]["mirrored"] == 1


def test_unreachable_engram_shows_in_health(make_settings: Callable[..., Settings], rhetor: Any) -> None:
    with rhetor(make_settings(engram_url=f"http://127.0.0.1:{free_port()}", engram_timeout_s=0.5)) as base:
        assert httpx.post(f"{base}/api/v1/chat", json={"message": "x", "context_id": "k"}).status_code == 200
        deadline = time.monotonic() + 10
        while httpx.get(f"{base}/health").json()["details"]["engram"]["state"] != "unreachable":
            assert time.monotonic() < deadline
            time.sleep(0.05)
