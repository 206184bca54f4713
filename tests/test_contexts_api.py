"""Server-side contexts over real HTTP: continuation, the messages-list rule, concurrency, persistence,
inspection routes, and what a cancelled stream leaves behind."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

SIM = {"provider": "simulated", "model": "simulated-fast"}


def chat(url: str, **body: Any) -> dict[str, Any]:
    r = httpx.post(f"{url}/api/v1/chat", json={"options": SIM, **body})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def test_message_continues_stored_conversation(simulated_rhetor: str) -> None:
    first = chat(simulated_rhetor, message="one", context_id="ergon:c1")
    assert "conversation" not in first["content"]  # a lone message
    second = chat(simulated_rhetor, message="two", context_id="ergon:c1")
    assert "I see a conversation with 3 messages" in second["content"]  # history was sent to the model
    page = httpx.get(f"{simulated_rhetor}/api/v1/contexts/ergon:c1").json()
    assert page["total"] == 4 and page["component"] == "ergon"
    assert [m["role"] for m in page["messages"]] == ["user", "assistant", "user", "assistant"]
    assert [m["content"] for m in page["messages"]][::2] == ["one", "two"]


def test_messages_list_records_only_new_turn(simulated_rhetor: str) -> None:
    convo = [{"role": "user", "content": "q1"}]
    a1 = chat(simulated_rhetor, messages=convo, context_id="x")["content"]
    convo += [{"role": "assistant", "content": a1}, {"role": "user", "content": "q2"}]
    chat(simulated_rhetor, messages=convo, context_id="x")
    page = httpx.get(f"{simulated_rhetor}/api/v1/contexts/x").json()
    assert [m["content"] for m in page["messages"] if m["role"] == "user"] == ["q1", "q2"]
    assert page["total"] == 4


def test_stateless_without_context(simulated_rhetor: str) -> None:
    chat(simulated_rhetor, message="nobody keeps me")
    assert httpx.get(f"{simulated_rhetor}/api/v1/contexts").json()["total"] == 0


def test_fifty_concurrent_turns_none_lost(simulated_rhetor: str) -> None:
    async def run() -> None:
        async with httpx.AsyncClient(base_url=simulated_rhetor, timeout=30) as client:
            rs = await asyncio.gather(*[client.post("/api/v1/chat", json={
                "message": f"turn-{i}", "context_id": "busy", "options": SIM}) for i in range(50)])
            assert all(r.status_code == 200 for r in rs)

    asyncio.run(run())
    page = httpx.get(f"{simulated_rhetor}/api/v1/contexts/busy", params={"limit": 1000}).json()
    msgs = page["messages"]
    assert page["total"] == 100
    users = [m["content"] for m in msgs if m["role"] == "user"]
    assert sorted(users) == sorted(f"turn-{i}" for i in range(50))
    for user, reply in zip(msgs[::2], msgs[1::2], strict=True):  # every turn kept whole, never interleaved
        assert user["role"] == "user" and reply["role"] == "assistant"
        assert f'"{user["content"]}"' in reply["content"]


def test_persistence_list_export_delete(make_settings: Callable[..., Any], rhetor: Any) -> None:
    settings = make_settings()
    with rhetor(settings) as url:
        chat(url, message="remember me", context_id="telos:keep")
    with rhetor(settings) as url:  # a restart on the same data dir
        listing = httpx.get(f"{url}/api/v1/contexts").json()
        assert [c["context_id"] for c in listing["contexts"]] == ["telos:keep"]
        second = chat(url, message="again", context_id="telos:keep")
        assert "conversation with 3 messages" in second["content"]
        export = httpx.get(f"{url}/api/v1/contexts/telos:keep/export").json()
        assert export["context_id"] == "telos:keep" and export["max_tokens"] == 4000
        assert {"summaries", "metadata", "total_token_count", "archived_messages"} <= set(export)
        assert export["messages"][0]["content"] == "remember me"
        assert httpx.delete(f"{url}/api/v1/contexts/telos:keep").json()["deleted"] is True
        assert httpx.get(f"{url}/api/v1/contexts/telos:keep").status_code == 404
        assert httpx.delete(f"{url}/api/v1/contexts/telos:keep").status_code == 404


def test_context_ids_are_data(simulated_rhetor: str) -> None:
    for cid in ("../../etc/passwd", "a/b/c", "ünïcødé:☃", "x" * 256):
        chat(simulated_rhetor, message="hi", context_id=cid)
        got = httpx.get(f"{simulated_rhetor}/api/v1/contexts/{quote(cid, safe='')}").json()
        assert got["context_id"] == cid and got["total"] == 2
    r = httpx.post(f"{simulated_rhetor}/api/v1/chat", json={"message": "x", "context_id": "y" * 257})
    assert r.status_code == 422 and "context_id" in r.json()["error"]["message"]
    assert httpx.get(f"{simulated_rhetor}/api/v1/contexts/{'y' * 257}").status_code == 400


def test_client_disconnect_cancels_stream(make_settings: Callable[..., Any], rhetor: Any) -> None:
    with rhetor(make_settings(simulated_delay_scale=1.0)) as url:
        with httpx.stream("POST", f"{url}/api/v1/chat/stream", json={
                "message": "long one", "context_id": "gone",
                "options": {"provider": "simulated", "model": "simulated-advanced"}}) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    break  # leave after the first chunk
        deadline = time.monotonic() + 5
        page: dict[str, Any] = {}
        while time.monotonic() < deadline:
            page = httpx.get(f"{url}/api/v1/contexts/gone").json()
            if page.get("total"):
                break
            time.sleep(0.05)
        assert page["messages"][0]["metadata"]["status"] == "cancelled"
        partial = page["messages"][1]["content"] if page["total"] > 1 else ""
        assert len(partial) < 100  # the upstream stopped; a full answer is ~300 characters
