"""One store-protocol suite run against every backend: the SQLite default and PostgreSQL (tests/engines.py starts
or finds a real server, or skips saying why). A backend that passes here can replace the default unseen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from rhetor.context import ContextStore, NewMessage, SqliteContextStore
from rhetor.errors import InvalidRequestError
from rhetor.governance.keys import KeyRecord
from rhetor.governance.keystore import KeyStore, SqliteKeyStore

BACKENDS = ["sqlite", "postgres"]


def turn(user: str, reply: str) -> list[NewMessage]:
    return [NewMessage("user", user), NewMessage("assistant", reply)]


@pytest.fixture
def backend_url(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("pg_url") if request.param == "postgres" else None


def _contexts(url: str | None, tmp: Path) -> Any:
    if url is None:
        return SqliteContextStore(tmp / "rhetor.db")
    from rhetor.storage.pg_contexts import PostgresContextStore
    from rhetor.storage.postgres import Database

    return PostgresContextStore(Database(url), owns=True)


def _keys(url: str | None, tmp: Path) -> Any:
    if url is None:
        return SqliteKeyStore(tmp / "keys.db")
    from rhetor.storage.pg_keys import PostgresKeyStore
    from rhetor.storage.postgres import Database

    return PostgresKeyStore(Database(url), owns=True)


@pytest.fixture
async def contexts(backend_url: str | None, tmp_path: Path) -> AsyncIterator[Any]:
    s = _contexts(backend_url, tmp_path)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def keys(backend_url: str | None, tmp_path: Path) -> AsyncIterator[Any]:
    s = _keys(backend_url, tmp_path)
    await s.open()
    yield s
    await s.close()


pytestmark = pytest.mark.parametrize("backend_url", BACKENDS, indirect=True)


async def test_contexts_append_history_page_and_statuses(contexts: Any) -> None:
    assert isinstance(contexts, ContextStore)
    await contexts.append_turn("ergon:a", turn("hi", "hello"))
    await contexts.append_turn("ergon:a", turn("bad", "x"), status="error")
    await contexts.append_turn("ergon:a", [NewMessage("user", "meta", {"k": [1, 2]})])
    history = await contexts.history("ergon:a")
    assert [(m.role, m.content) for m in history] == [("user", "hi"), ("assistant", "hello"), ("user", "meta")]
    assert history[2].metadata == {"k": [1, 2], "status": "complete"}
    assert [m.id for m in history] == sorted(m.id for m in history)
    assert len(await contexts.history("ergon:a", complete_only=False)) == 5
    rows, total = await contexts.page("ergon:a", offset=1, limit=2)
    assert total == 5 and [m.content for m in rows] == ["hello", "bad"]
    assert rows[1].metadata["status"] == "error"
    with pytest.raises(InvalidRequestError, match="offset"):
        await contexts.page("ergon:a", offset=-1)
    assert await contexts.history("nobody") == []


async def test_contexts_summaries_export_delete_and_odd_ids(contexts: Any) -> None:
    odd = "terma:../../etc/passwd ünïcødé/'; DROP TABLE contexts; --"
    await contexts.append_turn("plain", turn("a", "b"))
    await contexts.append_turn(odd, turn("c", "d"))
    summaries = await contexts.list_contexts()
    assert [s.context_id for s in summaries] == [odd, "plain"]  # most recently updated first
    assert summaries[0].component == "terma" and summaries[0].message_count == 2 and summaries[1].component is None
    assert (await contexts.get_summary(odd)).message_count == 2  # type: ignore[union-attr]
    exported = await contexts.export(odd)
    assert exported is not None and exported["context_id"] == odd and exported["max_tokens"] == 4000
    assert [m["content"] for m in exported["messages"]] == ["c", "d"] and exported["metadata"] == {"component": "terma"}
    assert await contexts.delete(odd) is True and await contexts.delete(odd) is False
    assert await contexts.get_summary(odd) is None and await contexts.export(odd) is None
    assert await contexts.history(odd) == []


async def test_contexts_refuse_bad_input_without_half_writes(contexts: Any) -> None:
    with pytest.raises(InvalidRequestError, match="context_id"):
        await contexts.append_turn("bad\nid", turn("a", "b"))
    with pytest.raises(InvalidRequestError, match="metadata"):
        await contexts.append_turn("c", [NewMessage("user", "ok"), NewMessage("user", "x", {"s": {1, 2}})])
    with pytest.raises(InvalidRequestError, match="status"):
        await contexts.append_turn("c", turn("a", "b"), status="maybe")
    assert await contexts.get_summary("c") is None


async def test_concurrent_turns_on_one_context_never_interleave(contexts: Any) -> None:
    await asyncio.gather(*(contexts.append_turn("race", turn(f"u{i}", f"a{i}")) for i in range(20)))
    history = await contexts.history("race")
    assert len(history) == 40
    for user, reply in zip(history[::2], history[1::2], strict=True):
        assert user.content[1:] == reply.content[1:] and user.role == "user" and reply.role == "assistant"


def _record(key_id: str, digest: bytes) -> KeyRecord:
    return KeyRecord(id=key_id, name=f"n-{key_id}", digest=digest, hint="sk-…abcd", created_at=time.time(),
                     spec={"rpm": 5})


async def test_keys_create_update_rotate_revoke_bump_the_generation(keys: Any) -> None:
    store: KeyStore = keys
    g0 = await store.generation()
    await store.create(_record("k1", b"\x01" * 32))
    await store.create(_record("k2", b"\x02" * 32))
    assert [r.id for r in await store.all()] == ["k1", "k2"]
    assert (got := await store.get("k1")) is not None and got.spec == {"rpm": 5} and got.digest == b"\x01" * 32
    updated = await store.update("k1", None, {"rpm": 9})
    assert updated is not None and updated.name == "n-k1" and updated.spec == {"rpm": 9}
    rotated = await store.rotate("k1", b"\x03" * 32, "sk-…wxyz")
    assert rotated is not None and rotated.digest == b"\x03" * 32 and rotated.hint == "sk-…wxyz"
    revoked = await store.revoke("k1")
    assert revoked is not None and revoked.revoked_at is not None
    again = await store.revoke("k1")
    assert again is not None and again.revoked_at == revoked.revoked_at  # revoking twice keeps the first time
    assert await store.update("k1", "x", {}) is None and await store.rotate("k1", b"\x04" * 32, "h") is None
    assert await store.get("missing") is None and await store.revoke("missing") is None
    assert await store.generation() == g0 + 6


async def test_a_second_store_on_the_same_backend_sees_the_change(backend_url: str | None, tmp_path: Path) -> None:
    """Two processes (workers, replicas) share keys: one's write is the other's read, generation included."""
    make: Callable[[str | None, Path], Any] = _keys
    a, b = make(backend_url, tmp_path), make(backend_url, tmp_path)
    await a.open()
    await b.open()
    try:
        before = await b.generation()
        await a.create(_record("shared", b"\x09" * 32))
        assert await b.generation() == before + 1 and (await b.get("shared")) is not None
    finally:
        await a.close()
        await b.close()
