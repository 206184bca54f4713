"""Database and Redis URLs: which backend a URL names, and the URL as it may be shown (password removed).

Pure string handling; knows no driver.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from rhetor.errors import ConfigError

_SCHEMES = {"postgresql": "postgres", "postgres": "postgres", "sqlite": "sqlite",
            "redis": "redis", "rediss": "redis", "unix": "redis"}


def backend_of(url: str, var: str) -> str:
    """`postgres`, `sqlite` or `redis` for a URL; a ConfigError naming `var` for anything else."""
    scheme = urlsplit(url).scheme.lower()
    found = _SCHEMES.get(scheme.split("+")[0])
    if found is None:
        raise ConfigError(f"{var}: unsupported URL scheme {scheme!r} in {redact(url)} "
                          "(use postgresql://, redis:// or rediss://)")
    return found


def redact(url: str) -> str:
    """The URL with its password (and any `password=` query parameter) replaced by `***`."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        creds, host = netloc.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in creds else f"{user}@{host}"
    query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def split_schema(url: str) -> tuple[str, str | None]:
    """Take Rhetor's own `schema=` query parameter off a PostgreSQL URL: (URL for the driver, schema or None)."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query)
    schema = next((v for k, v in pairs if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in pairs if k != "schema"])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)), schema


__all__ = ["backend_of", "redact", "split_schema"]
