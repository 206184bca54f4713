"""PostgreSQL lost while Rhetor serves (its connections go through a relay the test cuts): chat with a stored
conversation keeps answering without it and says so (`x-rhetor-persistence`, `persistence` in native replies,
/health `details.persistence`), nothing answered that way is claimed as stored, and once PostgreSQL answers again
turns are stored as before."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from rhetor.settings import Settings
from tests.conftest import running_rhetor
from tests.fakes.tcp_cut import CutRelay

pytestmark = pytest.mark.scale


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)


@pytest.fixture
def relay(pg_url: str) -> Iterator[tuple[CutRelay, _Loop]]:
    loop = _Loop()
    cut = CutRelay(pg_url)
    loop.run(cut.start())
    yield cut, loop
    loop.run(cut.cut())
    loop.loop.call_soon_threadsafe(loop.loop.stop)


def test_chat_goes_on_without_persistence_and_says_so(make_settings: Callable[..., Settings],
                                                      relay: tuple[CutRelay, _Loop]) -> None:
    cut, loop = relay
    with running_rhetor(make_settings(database_url=SecretStr(cut.url), embedder="none")) as url:
        def chat(text: str) -> httpx.Response:
            return httpx.post(url + "/api/v1/chat", json={"message": text, "context_id": "pg-lost"}, timeout=20)

        first = chat("one")
        assert first.status_code == 200 and "x-rhetor-persistence" not in first.headers
        loop.run(cut.cut())  # PostgreSQL lost
        lost = chat("two")
        assert lost.status_code == 200, lost.text
        assert lost.headers["x-rhetor-persistence"].startswith("unavailable")
        assert lost.json()["persistence"] == "unavailable"
        compat = httpx.post(url + "/v1/chat/completions", headers={"x-rhetor-context-id": "pg-lost"},
                            json={"model": "simulated/simulated-fast", "messages": [{"role": "user", "content": "x"}]},
                            timeout=20)
        assert compat.status_code == 200 and compat.headers["x-rhetor-persistence"].startswith("unavailable")
        health = httpx.get(url + "/health", timeout=20).json()["details"]["persistence"]
        assert health["state"] == "degraded" and health["unstored_turns"] >= 2 and health["since"]
        stateless = httpx.post(url + "/api/v1/chat", json={"message": "no context"}, timeout=20)
        assert stateless.status_code == 200 and "x-rhetor-persistence" not in stateless.headers
        loop.run(cut.restore())  # back
        for _ in range(50):
            back = chat("three")
            if back.status_code == 200 and "x-rhetor-persistence" not in back.headers:
                break
        assert "x-rhetor-persistence" not in back.headers
        assert httpx.get(url + "/health", timeout=20).json()["details"]["persistence"]["state"] == "ok"
        stored = httpx.get(url + "/api/v1/contexts/pg-lost", timeout=20)
        texts = [m["content"] for m in stored.json()["messages"] if m["role"] == "user"] \
            if stored.status_code == 200 else []
        assert "one" in texts and "three" in texts and "two" not in texts, stored.text[:500]
