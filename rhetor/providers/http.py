"""HTTP plumbing shared by the HTTP providers: one pooled httpx client each, and the mapping of transport
failures and error statuses onto the error tree. Knows no vendor's body format beyond "find a message".
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from rhetor.errors import (
    ProviderError,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeoutError,
    parse_retry_after,
)


def make_client(
    base_url: str, *, headers: dict[str, str], timeout_s: float, connect_timeout_s: float
) -> httpx.AsyncClient:
    """A keep-alive pooled client. Created lazily by providers, so start-up makes no network call."""
    return httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
    )


def transport_error(exc: httpx.HTTPError, provider: str, model: str) -> ProviderError:
    """Map an httpx exception to "could not reach" (connect/timeout) or a protocol error."""
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeoutError(f"{provider} timed out: {type(exc).__name__}", provider=provider, model=model)
    if isinstance(exc, (httpx.ConnectError, httpx.NetworkError)):
        return UpstreamConnectError(f"could not reach {provider}: {type(exc).__name__}", provider=provider, model=model)
    return UpstreamProtocolError(f"{provider} transport failure: {type(exc).__name__}", provider=provider, model=model)


def _retry_after(headers: httpx.Headers) -> float | None:
    ms = headers.get("retry-after-ms")
    if ms:
        value = parse_retry_after(ms)
        return None if value is None else value / 1000
    return parse_retry_after(headers.get("retry-after"))


def status_error(response: httpx.Response, body: bytes, provider: str, model: str) -> UpstreamStatusError:
    """Build an UpstreamStatusError from an error response, pulling the vendor's message and type if present."""
    message, etype = _error_details(body)
    return UpstreamStatusError(
        f"{provider} answered {response.status_code}: {message or response.reason_phrase}",
        status=response.status_code,
        provider=provider,
        model=model,
        retry_after=_retry_after(response.headers),
        upstream_type=etype,
    )


def _error_details(body: bytes) -> tuple[str, str | None]:
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode("utf-8", "replace"), None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        return str(err.get("message", "")), (str(err["type"]) if err.get("type") else None)
    if isinstance(err, str):  # ollama: {"error": "..."}
        return err, None
    return str(data)[:200], None


__all__ = ["make_client", "status_error", "transport_error"]
