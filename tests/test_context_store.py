"""The SQLite context store against real database files in tmp_path: schema, atomicity, ids, persistence."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from rhetor.context import MIGRATIONS, ContextStore, NewMessage, SqliteContextStore
from rhetor.errors import InvalidRequestError, RhetorError


def turn(user: str, reply: str) -> list[NewMessage]:
    return [NewMessage("user", user), NewMessage("assistant", reply)]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteContextStore]:
    s = SqliteContextStore(tmp_path / "db" / "rhetor.db")
    await s.open()
    yield s
    await s.close()


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


async def test_satisfies_protocol_and_creates_parent_dirs(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "rhetor.db"
    s = SqliteContextStore(path)
    assert isinstance(s, ContextStore)
    await s.open()
    try:
        assert path.is_file()
    finally:
        await s.close()


async def test_schema_pragmas_and_idempotent_migrations(tmp_path: Path) -> None:
    path = tmp_path / "rhetor.db"
    s = SqliteContextStore(path)
    await s.open()
    await s.append_turn("ergon", turn("hi", "hello"))
    await s.close()
    # Opening again must not re-run migrations (which would fail on CREATE TABLE) nor lose data.
    s = SqliteContextStore(path)
    await s.open()
    await s.open()  # a second open on an open store is a no-op
    assert [m.content for m in await s.history("ergon")] == ["hi", "hello"]
    await s.close()
    conn = raw(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"contexts", "messages"} <= tables
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "messages_by_context" in indexes
    finally:
        conn.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rhetor.db"
    conn = raw(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    s = SqliteContextStore(path)
    with pytest.raises(RhetorError, match="schema version"):
        await s.open()
    with pytest.raises(RhetorError, match="not open"):
        await s.history("x")


async def test_calls_before_open_and_after_close_fail_cleanly(tmp_path: Path) -> None:
    s = SqliteContextStore(tmp_path / "rhetor.db")
    with pytest.raises(RhetorError, match="not open"):
        await s.list_contexts()
    await s.open()
    await s.close()
    await s.close()  # idempotent
    with pytest.raises(RhetorError, match="not open"):
        await s.append_turn("x", turn("a", "b"))


async def test_history_in_order_with_metadata_and_component(store: SqliteContextStore) -> None:
    await store.append_turn(
        "ergon:agent-1", [NewMessage("user", "q1", {"k": [1, 2]}), NewMessage("assistant", "a1")]
    )
    await store.append_turn("ergon:agent-1", turn("q2", "a2"))
    hist = await store.history("ergon:agent-1")
    assert [(m.role, m.content) for m in hist] == [
        ("user", "q1"),
        ("assistant", "a1"),
        ("user", "q2"),
        ("assistant", "a2"),
    ]
    assert [m.id for m in hist] == sorted(m.id for m in hist)
    assert hist[0].metadata == {"k": [1, 2], "status": "complete"}
    assert hist[0].timestamp.endswith("+00:00") and "T" in hist[0].timestamp
    summary = await store.get_summary("ergon:agent-1")
    assert summary is not None
    assert summary.component == "ergon"
    assert summary.message_count == 4
    assert summary.created_at <= summary.updated_at
    bare = "terma"
    await store.append_turn(bare, turn("x", "y"))
    bare_summary = await store.get_summary(bare)
    assert bare_summary is not None and bare_summary.component is None
    assert await store.history("never-used") == []


async def test_turn_is_atomic_when_the_database_fails_midway(tmp_path: Path) -> None:
    path = tmp_path / "rhetor.db"
    s = SqliteContextStore(path)
    await s.open()
    try:
        # A real trigger makes the second insert of the turn fail inside the transaction.
        conn = raw(path)
        conn.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON messages WHEN NEW.content = 'boom' "
            "BEGIN SELECT RAISE(ABORT, 'boom refused'); END"
        )
        conn.close()
        await s.append_turn("ctx", turn("before", "ok"))
        with pytest.raises(RhetorError, match="boom refused"):
            await s.append_turn("ctx", turn("half", "boom"))
        with pytest.raises(RhetorError):
            await s.append_turn("fresh", turn("half", "boom"))
        assert [m.content for m in await s.history("ctx", complete_only=False)] == ["before", "ok"]
        assert await s.get_summary("fresh") is None  # the context row rolled back with the messages
        await s.append_turn("ctx", turn("after", "fine"))  # the connection is still usable
        assert [m.content for m in await s.history("ctx")] == ["before", "ok", "after", "fine"]
    finally:
        await s.close()


async def test_invalid_turns_write_nothing(store: SqliteContextStore) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await store.append_turn(
            "ctx", [NewMessage("user", "ok"), NewMessage("assistant", "x", {"bad": object()})]
        )
    assert info.value.param == "messages"
    with pytest.raises(InvalidRequestError) as info:
        await store.append_turn("ctx", [])
    assert info.value.param == "messages"
    with pytest.raises(InvalidRequestError) as info:
        await store.append_turn("ctx", turn("a", "b"), status="weird")
    assert info.value.param == "status"
    assert await store.get_summary("ctx") is None
    assert await store.list_contexts() == []


async def test_concurrent_turns_never_interleave(store: SqliteContextStore) -> None:
    await asyncio.gather(*(store.append_turn("busy", turn(f"q{i}", f"a{i}")) for i in range(50)))
    hist = await store.history("busy")
    assert len(hist) == 100
    seen = set()
    for user, reply in zip(hist[::2], hist[1::2], strict=True):
        assert user.role == "user" and reply.role == "assistant"
        n = user.content[1:]
        assert reply.content == f"a{n}"
        seen.add(n)
    assert seen == {str(i) for i in range(50)}
    assert [m.timestamp for m in hist] == sorted(m.timestamp for m in hist)
    summary = await store.get_summary("busy")
    assert summary is not None and summary.message_count == 100


async def test_a_waiting_write_does_not_block_the_event_loop(store: SqliteContextStore) -> None:
    blocker = raw(store.path)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock; the store must wait off-loop
    try:
        task = asyncio.create_task(store.append_turn("waiting", turn("q", "a")))
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(20):
            await asyncio.sleep(0.01)
        # Blocking on the loop would have stalled these ticks for the whole 5 s busy timeout.
        assert loop.time() - started < 2.0
        assert not task.done()
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    await task
    assert [m.content for m in await store.history("waiting")] == ["q", "a"]


async def test_concurrent_turns_on_many_contexts(store: SqliteContextStore) -> None:
    await asyncio.gather(*(store.append_turn(f"c{i % 5}", turn(f"q{i}", f"a{i}")) for i in range(40)))
    summaries = await store.list_contexts()
    assert sorted(s.context_id for s in summaries) == [f"c{i}" for i in range(5)]
    assert all(s.message_count == 16 for s in summaries)


async def test_persistence_across_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "rhetor.db"
    s = SqliteContextStore(path)
    await s.open()
    await s.append_turn("hermes:x", turn("remember", "me"))
    await s.append_turn("hermes:x", turn("lost", "half"), status="error")
    before = await s.history("hermes:x", complete_only=False)
    await s.close()
    s2 = SqliteContextStore(path)
    await s2.open()
    try:
        assert await s2.history("hermes:x", complete_only=False) == before
        assert [m.content for m in await s2.history("hermes:x")] == ["remember", "me"]
        await s2.append_turn("hermes:x", turn("more", "yes"))
        assert (await s2.history("hermes:x"))[-1].id > before[-1].id
    finally:
        await s2.close()


@pytest.mark.parametrize(
    "context_id",
    ["a/b/c", "..", "../../etc/passwd", "/abs/path", "C:\\windows\\x", "ünïcødé:λ 💬", "x" * 256, "a:b", " "],
)
async def test_unusual_ids_are_data(tmp_path: Path, context_id: str) -> None:
    s = SqliteContextStore(tmp_path / "store" / "rhetor.db")
    await s.open()
    try:
        await s.append_turn(context_id, turn("hi", "there"))
        assert [m.content for m in await s.history(context_id)] == ["hi", "there"]
        summary = await s.get_summary(context_id)
        assert summary is not None and summary.context_id == context_id
        exported = await s.export(context_id)
        assert exported is not None and exported["context_id"] == context_id
    finally:
        await s.close()
    # No id ever becomes a path: only the database file exists, nothing escaped the directory.
    assert files_under(tmp_path) == ["store", "store/rhetor.db"]


@pytest.mark.parametrize("bad", ["", "x" * 257])
async def test_bad_ids_are_rejected_naming_context_id(store: SqliteContextStore, bad: str) -> None:
    for call in (
        store.append_turn(bad, turn("a", "b")),
        store.history(bad),
        store.page(bad),
        store.get_summary(bad),
        store.delete(bad),
        store.export(bad),
    ):
        with pytest.raises(InvalidRequestError) as info:
            await call
        assert info.value.param == "context_id"
        assert info.value.status == 400
    assert await store.list_contexts() == []


async def test_delete(store: SqliteContextStore, tmp_path: Path) -> None:
    await store.append_turn("gone", turn("a", "b"))
    await store.append_turn("kept", turn("c", "d"))
    assert await store.delete("gone") is True
    assert await store.delete("gone") is False
    assert await store.delete("never") is False
    assert await store.history("gone") == []
    assert await store.get_summary("gone") is None
    assert [s.context_id for s in await store.list_contexts()] == ["kept"]
    conn = raw(store.path)
    try:  # the cascade removed the messages rows, not just the context row
        assert conn.execute("SELECT COUNT(*) FROM messages WHERE context_id = 'gone'").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 2
    finally:
        conn.close()
    await store.append_turn("gone", turn("again", "new"))
    assert [m.content for m in await store.history("gone")] == ["again", "new"]


async def test_list_contexts_most_recent_first(store: SqliteContextStore) -> None:
    for cid in ("athena:1", "telos", "ergon:2"):
        await store.append_turn(cid, turn("q", "a"))
    await store.append_turn("athena:1", turn("q", "a"))
    summaries = await store.list_contexts()
    assert [s.context_id for s in summaries] == ["athena:1", "ergon:2", "telos"]
    assert {s.context_id: (s.message_count, s.component) for s in summaries} == {
        "athena:1": (4, "athena"),
        "ergon:2": (2, "ergon"),
        "telos": (2, None),
    }


async def test_page_offset_limit_total(store: SqliteContextStore) -> None:
    for i in range(6):
        await store.append_turn("p", turn(f"q{i}", f"a{i}"), status="cancelled" if i == 2 else "complete")
    msgs, total = await store.page("p", offset=0, limit=5)
    assert total == 12
    assert [m.content for m in msgs] == ["q0", "a0", "q1", "a1", "q2"]
    msgs, total = await store.page("p", offset=4, limit=3)
    assert total == 12
    assert [(m.content, m.metadata["status"]) for m in msgs] == [
        ("q2", "cancelled"),
        ("a2", "cancelled"),
        ("q3", "complete"),
    ]
    msgs, total = await store.page("p", offset=10, limit=50)
    assert [m.content for m in msgs] == ["q5", "a5"] and total == 12
    assert await store.page("p", offset=100) == ([], 12)
    assert await store.page("nothing") == ([], 0)
    with pytest.raises(InvalidRequestError) as info:
        await store.page("p", offset=-1)
    assert info.value.param == "offset"
    with pytest.raises(InvalidRequestError) as info:
        await store.page("p", limit=-1)
    assert info.value.param == "limit"


async def test_complete_only_filters_failed_turns(store: SqliteContextStore) -> None:
    await store.append_turn("f", turn("q1", "a1"))
    await store.append_turn("f", turn("q2", "partial"), status="error")
    await store.append_turn("f", turn("q3", "stopped"), status="cancelled")
    await store.append_turn("f", turn("q4", "a4"))
    assert [m.content for m in await store.history("f")] == ["q1", "a1", "q4", "a4"]
    everything = await store.history("f", complete_only=False)
    assert [(m.content, m.metadata["status"]) for m in everything] == [
        ("q1", "complete"),
        ("a1", "complete"),
        ("q2", "error"),
        ("partial", "error"),
        ("q3", "cancelled"),
        ("stopped", "cancelled"),
        ("q4", "complete"),
        ("a4", "complete"),
    ]


async def test_export_has_the_r1_shape(store: SqliteContextStore) -> None:
    assert await store.export("missing") is None
    await store.append_turn(
        "ergon:main", [NewMessage("user", "abcdefgh"), NewMessage("assistant", "abcd", {"m": 1})]
    )
    data = await store.export("ergon:main")
    assert data is not None
    assert set(data) == {
        "context_id",
        "created_at",
        "updated_at",
        "messages",
        "summaries",
        "metadata",
        "total_token_count",
        "max_tokens",
        "archived_messages",
    }
    assert data["context_id"] == "ergon:main"
    assert data["metadata"] == {"component": "ergon"}
    assert data["max_tokens"] == 4000
    assert data["summaries"] == [] and data["archived_messages"] == []
    assert data["total_token_count"] == 2 + 1  # estimate_tokens: ~4 characters per token
    first, second = data["messages"]
    assert set(first) == {"id", "role", "content", "timestamp", "metadata"}
    assert (first["role"], first["content"]) == ("user", "abcdefgh")
    assert second["metadata"] == {"m": 1, "status": "complete"}
    assert data["created_at"] <= data["updated_at"]
    assert orjson.loads(orjson.dumps(data)) == data
