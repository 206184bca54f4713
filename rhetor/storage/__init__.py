"""The store protocols' backends: SQLite (the embedded default, in each room), PostgreSQL and Redis.

Nothing above this room imports a database driver: the app asks `rhetor.storage.backends` for the stores named by
RHETOR_DATABASE_URL / RHETOR_REDIS_URL and receives objects that satisfy the rooms' own protocols
(ContextStore, KeyStore, RateLimiter). Drivers (asyncpg, redis) are imported lazily, only when a URL names them,
so a plain `./run_rhetor.sh` needs neither installed. Knows the protocols; nothing of HTTP or routing.
"""

from __future__ import annotations

from rhetor.storage.urls import backend_of, redact

__all__ = ["backend_of", "redact"]
