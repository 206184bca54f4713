"""PostgreSQL specifics: migrations run once under the advisory lock when replicas start together, a schema per
deployment, and an unreachable server named without its password."""

from __future__ import annotations

import asyncio

import pytest

from rhetor.errors import ConfigError
from rhetor.storage.urls import backend_of, redact, split_schema


def test_urls_are_shown_without_passwords_and_schemes_are_checked() -> None:
    assert redact("postgresql://rhetor:s3cret@db:5432/app?schema=x") == "postgresql://rhetor:***@db:5432/app?schema=x"
    assert redact("redis://:pw@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact("postgresql://db/app?password=pw&sslmode=require") == \
        "postgresql://db/app?password=%2A%2A%2A&sslmode=require"
    assert split_schema("postgresql://h/d?sslmode=disable&schema=s1") == ("postgresql://h/d?sslmode=disable", "s1")
    assert backend_of("postgres://h/d", "RHETOR_DATABASE_URL") == "postgres"
    with pytest.raises(ConfigError, match="RHETOR_DATABASE_URL: unsupported URL scheme 'mysql'"):
        backend_of("mysql://u:pw@h/d", "RHETOR_DATABASE_URL")


async def test_replicas_starting_together_migrate_once(pg_url: str) -> None:
    pytest.importorskip("asyncpg")
    from rhetor.storage.pg_contexts import PostgresContextStore
    from rhetor.storage.pg_keys import PostgresKeyStore
    from rhetor.storage.postgres import Database

    dbs = [Database(pg_url) for _ in range(6)]
    stores = [PostgresContextStore(db) for db in dbs] + [PostgresKeyStore(db) for db in dbs]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        rows = await dbs[0].fetch("SELECT store, version FROM rhetor_schema ORDER BY store")
        assert [tuple(r) for r in rows] == [("contexts", 1), ("keys", 1)]
        assert await dbs[0].fetchval("SELECT value FROM keys_generation") == 0  # the seed row inserted once
        assert await dbs[0].fetchval("SELECT current_schema()") == pg_url.rsplit("schema=", 1)[1]
    finally:
        await asyncio.gather(*(db.close() for db in dbs))


async def test_unreachable_server_is_named_without_password() -> None:
    pytest.importorskip("asyncpg")
    from rhetor.storage.postgres import Database

    db = Database("postgresql://rhetor:hunter2@127.0.0.1:9/nope")
    with pytest.raises(ConfigError) as caught:
        await db.open()
    assert "postgresql://rhetor:***@127.0.0.1:9/nope" in caught.value.message
    assert "hunter2" not in caught.value.message


async def test_newer_schema_than_this_rhetor_refuses(pg_url: str) -> None:
    pytest.importorskip("asyncpg")
    from rhetor.storage.postgres import Database

    db = Database(pg_url)
    await db.open()
    try:
        assert await db.migrate("thing", [["CREATE TABLE thing (x INT)"], ["ALTER TABLE thing ADD y INT"]]) == 2
        with pytest.raises(ConfigError, match="thing schema version 2; this Rhetor knows up to 1"):
            await db.migrate("thing", [["CREATE TABLE thing (x INT)"]])
    finally:
        await db.close()
