"""The shared backends named by Settings: one PostgreSQL pool (RHETOR_DATABASE_URL) and one Redis client
(RHETOR_REDIS_URL) per process, and the stores built on them for the rooms that can share state.

With neither URL set nothing here loads a driver and every room keeps its SQLite/in-process default. `probe`
checks at start that each configured engine answers: one that does not is a ConfigError naming its URL (without
the password) — `python -m rhetor` exits 2 — unless RHETOR_DEGRADED_START=1, which starts anyway and says so.
`status` tells /health which guarantees are shared and which are per-process. Knows Settings and the rooms'
protocols; nothing of HTTP.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rhetor.errors import ConfigError
from rhetor.settings import Settings
from rhetor.storage.urls import backend_of, redact

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from rhetor.storage.pg_budgets import PostgresBudgetStore
    from rhetor.storage.pg_contexts import PostgresContextStore
    from rhetor.storage.pg_keys import PostgresKeyStore
    from rhetor.storage.pg_ledger import PostgresLedgerStore
    from rhetor.storage.pg_responses import PostgresResponseIndex
    from rhetor.storage.pg_settings import PostgresSettingStore
    from rhetor.storage.pg_templates import PostgresTemplateRows
    from rhetor.storage.pg_vectors import PostgresMemory
    from rhetor.storage.postgres import Database
    from rhetor.storage.redis_limits import RedisLimiter
    from rhetor.storage.redis_shared import RedisShared

log = logging.getLogger("rhetor.storage")
_PROBE_TIMEOUT_S = 5.0


class Backends:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.database_url = settings.database_url.get_secret_value() if settings.database_url else None
        self.redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
        if self.database_url and backend_of(self.database_url, "RHETOR_DATABASE_URL") != "postgres":
            raise ConfigError(f"RHETOR_DATABASE_URL: {redact(self.database_url)} is not a postgresql:// URL "
                              "(leave it unset for the embedded SQLite files)")
        if self.redis_url and backend_of(self.redis_url, "RHETOR_REDIS_URL") != "redis":
            raise ConfigError(f"RHETOR_REDIS_URL: {redact(self.redis_url)} is not a redis:// URL")
        self._db: Database | None = None
        self._redis: Redis | None = None
        self._limiter: RedisLimiter | None = None
        self._shared: RedisShared | None = None
        self._given: set[str] = set()  # the stores handed out on PostgreSQL (what /health reports)
        self._memory: PostgresMemory | None = None  # semantic memory on PostgreSQL, once the app took it

    @property
    def database(self) -> Database | None:
        if self.database_url and self._db is None:
            from rhetor.storage.postgres import Database

            self._db = Database(self.database_url)
        return self._db

    @property
    def redis(self) -> Redis | None:
        if self.redis_url and self._redis is None:
            from redis.asyncio import Redis

            self._redis = Redis.from_url(self.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
        return self._redis

    def contexts(self) -> PostgresContextStore | None:
        db = self.database
        if db is None:
            return None
        from rhetor.storage.pg_contexts import PostgresContextStore

        self._given.add("contexts")
        return PostgresContextStore(db)

    def keys(self) -> PostgresKeyStore | None:
        db = self.database
        if db is None:
            return None
        from rhetor.storage.pg_keys import PostgresKeyStore

        self._given.add("keys")
        return PostgresKeyStore(db)

    def templates(self) -> PostgresTemplateRows | None:
        db = self.database
        if db is None:
            return None
        from rhetor.storage.pg_templates import PostgresTemplateRows

        self._given.add("templates")
        return PostgresTemplateRows(db)

    def ledger(self) -> PostgresLedgerStore | None:
        db = self.database
        if db is None:
            return None
        from rhetor.storage.pg_ledger import PostgresLedgerStore

        self._given.add("ledger")
        return PostgresLedgerStore(db)

    def budgets(self) -> PostgresBudgetStore | None:
        db = self.database
        if db is None:
            return None
        from rhetor.storage.pg_budgets import PostgresBudgetStore

        self._given.add("budgets")
        return PostgresBudgetStore(db)

    def responses(self) -> PostgresResponseIndex | None:
        db = self.database
        if db is None:
            return None
        from rhetor.storage.pg_responses import PostgresResponseIndex

        self._given.add("responses")
        return PostgresResponseIndex(db)

    def settings_store(self) -> PostgresSettingStore | None:
        """Small named values shared by every replica (the legacy front's `POST /provider` default)."""
        db = self.database
        if db is None:
            return None
        from rhetor.storage.pg_settings import PostgresSettingStore

        self._given.add("settings_store")
        return PostgresSettingStore(db)

    def memory(self) -> PostgresMemory | None:
        """Message vectors and lexical search over the shared messages (semantic memory on PostgreSQL)."""
        db = self.database
        if db is None:
            return None
        from rhetor.storage.pg_vectors import PostgresMemory

        self._given.add("memory")
        self._memory = PostgresMemory(db)
        return self._memory

    def limiter(self) -> RedisLimiter | None:
        client = self.redis
        if client is None or self.redis_url is None:
            return None
        if self._limiter is None:
            from rhetor.storage.redis_limits import RedisLimiter

            self._limiter = RedisLimiter(client, self.settings.redis_prefix, self.redis_url)
        return self._limiter

    def shared(self) -> RedisShared | None:
        """Budgets, the response cache, breakers and the change bus on Redis (rhetor.storage.redis_shared)."""
        client = self.redis
        if client is None or self.redis_url is None:
            return None
        if self._shared is None:
            from rhetor.storage.redis_shared import RedisShared

            self._shared = RedisShared(client, self.settings, self.redis_url)
        return self._shared

    async def open(self) -> None:
        """Open the database pool (and migrate) before the stores use it: a ConfigError naming the URL if down."""
        if self.database is not None:
            await self.database.open()

    async def close(self) -> None:
        if self._shared is not None:
            await self._shared.close()
        if self._limiter is not None:
            await self._limiter.drain()
        if self._db is not None:
            await self._db.close()
        if self._redis is not None:
            await self._redis.aclose()

    def status(self) -> dict[str, Any]:
        """What is shared across workers and replicas, and what each process keeps to itself: per store, the
        backend this process actually uses (a store is on PostgreSQL only once the app took it from here)."""
        stores: dict[str, dict[str, Any]] = {}
        for name, (given, fallback) in _STORES.items():
            if given in self._given:
                stores[name] = {"backend": "postgres", "shared": "every replica"}
            else:
                stores[name] = {"backend": fallback, "shared": "this machine (one data dir)"}
        if self._memory is not None:  # exact cosine search: in NumPy, or in the database with pgvector
            stores["message_vectors"]["search"] = self._memory.search
        shared = [f"{name} ({info['backend']}{'' if info['backend'] == 'postgres' else ', this machine'})"
                  for name, info in stores.items()]
        per_process: list[str] = []
        limiter = self._limiter
        if limiter is not None and limiter.shared:
            shared.append("rate limits")
        else:
            per_process.append("rate limits")
        per_process.extend(["budget spend counters", "breakers and cool-downs", "response cache",
                            "templates cache (reload() re-reads)", "vector cache"])
        out = {
            "database": {"backend": "postgres", "url": redact(self.database_url)} if self.database_url
            else {"backend": "sqlite"},
            "redis": limiter.status() if limiter is not None else {"backend": "none"},
            "stores": stores, "shared": shared, "per_process": per_process
        }
        if self._shared is not None:  # budgets, cache, breakers, change notices: shared while Redis answers
            self._shared.report(out)
        return out


# store name in /health -> (the Backends method that hands it out, its embedded default)
_STORES: dict[str, tuple[str, str]] = {
    "contexts": ("contexts", "sqlite"), "message_vectors": ("memory", "sqlite"), "keys": ("keys", "sqlite"),
    "templates": ("templates", "sqlite"), "usage_ledger": ("ledger", "sqlite"), "budgets": ("budgets", "sqlite"),
    "responses": ("responses", "sqlite"), "legacy_defaults": ("settings_store", "file"),
}


async def check(settings: Settings) -> list[str]:
    """One throwaway connection to each configured engine: what did not answer, each naming its URL (no password).
    Run by `python -m rhetor` before serving (exit 2 on a problem unless RHETOR_DEGRADED_START=1)."""
    problems: list[str] = []
    backends = Backends(settings)
    if backends.database_url is not None:
        import asyncpg

        from rhetor.storage.urls import split_schema

        try:
            conn = await asyncpg.connect(split_schema(backends.database_url)[0], timeout=_PROBE_TIMEOUT_S)
            await conn.close()
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            problems.append(f"cannot connect to PostgreSQL at {redact(backends.database_url)}: {exc}")
    client = backends.redis
    if client is not None and backends.redis_url is not None:
        from redis.exceptions import RedisError

        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            problems.append(f"cannot connect to Redis at {redact(backends.redis_url)}: {exc}")
        finally:
            await client.aclose()
    return problems


def degrade(settings: Settings, problems: list[str]) -> Settings:
    """RHETOR_DEGRADED_START=1: serve anyway. Without PostgreSQL this process keeps contexts and keys in its own
    SQLite files (said in /health); without Redis the limiter counts per process until Redis answers."""
    for line in problems:
        log.warning("degraded start: %s", line)
    if any("PostgreSQL" in p for p in problems):
        return settings.model_copy(update={"database_url": None})
    return settings


__all__ = ["Backends", "check", "degrade"]
