"""One PostgreSQL database shared by every store of a replica: an asyncpg pool, and ordered, versioned migrations
run once under an advisory lock however many replicas start at the same moment.

Each store brings its own append-only migration list under a name (`contexts`, `keys`, ...); the versions applied
are kept per name in `rhetor_schema`. An optional `schema=` query parameter of RHETOR_DATABASE_URL puts every table
in that PostgreSQL schema (created if missing), so several deployments or test runs can share one database.
Driver errors become `StoreUnavailableError` (a 503 the caller may retry) or ConfigError at start, always naming
the URL without its password. Knows asyncpg and SQL; nothing of the stores' rows, HTTP or routing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from rhetor.errors import ConfigError, StoreUnavailableError
from rhetor.storage.urls import redact, split_schema

if TYPE_CHECKING:
    import asyncpg

Migrations = Sequence[Sequence[str]]
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_CONNECT_TIMEOUT_S = 5.0
# One number for the whole migration lock: hashtext('rhetor migrations') would need the database to compute it.
_MIGRATION_LOCK = 0x52484554  # "RHET"


class Database:
    """A pool on `url` (postgresql://user:password@host:port/db[?schema=name]); open() connects and migrates."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10, label: str = "database") -> None:
        self.url, self.shown = url, redact(url)
        self._dsn, self.schema = split_schema(url)
        if self.schema is not None and not _SCHEMA_NAME.match(self.schema):
            raise ConfigError(f"RHETOR_DATABASE_URL: schema {self.schema!r} must be a lower-case SQL name")
        self._sizes = (min_size, max_size)
        self._label = label
        self._pool: asyncpg.Pool | None = None
        self._pending: list[tuple[str, Migrations]] = []
        self.pgvector = False

    def register(self, name: str, migrations: Migrations) -> None:
        """A store's migrations, applied by the next `open` (or at once by `migrate` if already open)."""
        self._pending.append((name, migrations))

    async def open(self) -> None:
        if self._pool is not None:
            return
        import asyncpg

        settings = {"search_path": f"{self.schema},public"} if self.schema else {}
        try:
            if self.schema:  # the schema must exist before a pool whose search_path names it is useful
                conn = await asyncpg.connect(self._dsn, timeout=_CONNECT_TIMEOUT_S)
                try:  # under the migration lock: IF NOT EXISTS alone races another replica starting now
                    async with conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                finally:
                    await conn.close()
            self._pool = await asyncpg.create_pool(self._dsn, min_size=self._sizes[0], max_size=self._sizes[1],
                                                   timeout=_CONNECT_TIMEOUT_S, server_settings=settings)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise ConfigError(f"cannot connect to PostgreSQL at {self.shown}: {_reason(exc)}") from None
        try:
            self.pgvector = bool(await self.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector')"))
            for name, migrations in self._pending:
                await self.migrate(name, migrations)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def migrate(self, name: str, migrations: Migrations) -> int:
        """Bring store `name` to the last version of `migrations` in one transaction, under the advisory lock:
        a replica starting at the same moment waits, then finds the work done. Returns the version reached."""
        async with self.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute("CREATE TABLE IF NOT EXISTS rhetor_schema "
                               "(store TEXT PRIMARY KEY, version INTEGER NOT NULL)")
            current = int(await conn.fetchval("SELECT version FROM rhetor_schema WHERE store = $1", name) or 0)
            if current > len(migrations):
                raise ConfigError(f"{self._label} {self.shown} has {name} schema version {current}; this Rhetor "
                                  f"knows up to {len(migrations)}: upgrade Rhetor")
            for version in range(current + 1, len(migrations) + 1):
                for statement in migrations[version - 1]:
                    await conn.execute(statement)
            if len(migrations) > current:
                await conn.execute("INSERT INTO rhetor_schema VALUES ($1, $2) ON CONFLICT (store) "
                                   "DO UPDATE SET version = excluded.version", name, len(migrations))
            return max(current, len(migrations))

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        import asyncpg

        if self._pool is None:
            raise StoreUnavailableError(f"{self._label} {self.shown} is not open")
        try:
            async with self._pool.acquire(timeout=_CONNECT_TIMEOUT_S) as conn:
                yield conn
        except (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                asyncpg.CannotConnectNowError) as exc:
            raise StoreUnavailableError(f"{self._label} {self.shown} is unreachable: {_reason(exc)}") from None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self.connection() as conn:
            return list(await conn.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        async with self.connection() as conn:
            return await conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self.connection() as conn:
            return await conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        async with self.connection() as conn:
            return str(await conn.execute(sql, *args))


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


__all__ = ["Database", "Migrations"]
