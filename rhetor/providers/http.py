"""HTTP plumbing shared by the HTTP providers: one lazily created, pooled aiohttp session per provider, and
the mapping of transport failures and error statuses onto the error tree.

aiohttp rather than httpx on the hot path: measured against the zero-delay upstream on one core, an aiohttp
session sustains ~9,800 requests/s where httpx.AsyncClient manages ~1,200 (see benchmarks/README.md).
Knows no vendor's body format beyond "find the error message"; scrubs the API key from every error.
Every call forwards the request's `x-request-id` and, when tracing is on, runs in a CLIENT span whose context
goes upstream as `traceparent`/`tracestate` (rhetor.observability.tracing; off, that costs one ContextVar read).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

if TYPE_CHECKING:  # aiohttp (with attrs, yarl, multidict: ~30% of start-up's imports) loads with the first
    import aiohttp  # upstream session (rhetor.lazy), not at start-up: a keyless start never needs it
else:
    from rhetor.lazy import aiohttp

from rhetor.errors import (
    InvalidRequestError,
    ProviderError,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeoutError,
    parse_retry_after,
)
from rhetor.observability import tracing
from rhetor.providers.base import LineDecoder
from rhetor.timing import current_clock
from rhetor.types import ProviderEvent


class HttpUpstream:
    """One upstream API: base URL, fixed headers (including the key), timeouts. No I/O until first use."""

    def __init__(self, provider: str, base_url: str, headers: Mapping[str, str], *, timeout_s: float,
                 connect_timeout_s: float, secret: str = "") -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self._headers = dict(headers)
        self._timeout_s = timeout_s
        self._connect_s = connect_timeout_s
        self._secret = secret
        self._session: aiohttp.ClientSession | None = None
        url = urlsplit(self.base_url)
        self._server = {"server.address": url.hostname or "", "server.port": url.port or (443 if url.scheme ==
                                                                                          "https" else 80)}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=512, keepalive_timeout=30, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers,
                                                  read_bufsize=2**20, auto_decompress=True)
        return self._session

    def _timeout(self, timeout_s: float | None) -> aiohttp.ClientTimeout:
        """A per-request `timeout_s` bounds the connect and each read, not the whole (possibly long) stream."""
        limit = timeout_s if timeout_s is not None else self._timeout_s
        return aiohttp.ClientTimeout(total=None, sock_connect=min(limit, self._connect_s), sock_read=limit)

    def scrub(self, err: ProviderError) -> ProviderError:
        """Belt and braces: an upstream could echo the key back in an error body."""
        if self._secret and self._secret in err.message:
            err.message = err.message.replace(self._secret, "[redacted]")
            err.args = (err.message,)
        return err

    def transport_error(self, exc: BaseException, model: str, *, started: bool = False) -> ProviderError:
        """"Could not reach" (connect, timeout) versus a connection that broke once the answer had begun."""
        p = self.provider
        if isinstance(exc, asyncio.TimeoutError):
            return UpstreamTimeoutError(f"{p} timed out ({type(exc).__name__})", provider=p, model=model)
        if isinstance(exc, aiohttp.ClientConnectorError) and not started:
            return UpstreamConnectError(f"could not reach {p}: {type(exc).__name__}", provider=p, model=model)
        if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)) or started:
            return UpstreamProtocolError(f"{p} cut the response: {type(exc).__name__}", provider=p, model=model)
        return UpstreamConnectError(f"could not reach {p}: {type(exc).__name__}", provider=p, model=model)

    def encode(self, payload: Any) -> bytes:
        """The request body. A value JSON cannot carry (nested deeper than 255 levels, an integer beyond 64 bits)
        is the caller's: a 400 before anything is sent, never a TypeError and a 500."""
        try:
            return orjson.dumps(payload)
        except orjson.JSONEncodeError as exc:
            raise InvalidRequestError(f"the request cannot be sent to {self.provider}: {exc} (a value is nested too "
                                      "deeply or a number is out of range)") from None

    async def request_json(self, method: str, path: str, payload: Any = None, *, model: str = "",
                           timeout_s: float | None = None) -> Any:
        """Send (optionally) a JSON body and return the parsed JSON answer; raise mapped errors otherwise."""
        body = await self.request_bytes(method, path, payload, model=model, timeout_s=timeout_s)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(f"{self.provider} answered with a body that is not JSON",
                                        provider=self.provider, model=model) from None

    async def request_bytes(self, method: str, path: str, payload: Any = None, *, model: str = "",
                            timeout_s: float | None = None, extra_headers: Mapping[str, str] | None = None) -> bytes:
        """Send (optionally) a JSON body (plus per-request headers) and return the answer's body as received."""
        data = self.encode(payload) if payload is not None else None
        headers = {"content-type": "application/json"} if data is not None else {}
        if extra_headers:
            headers.update(extra_headers)
        with tracing.span(method, self._attrs(method, path), kind="client") as span:
            self._outbound(headers, span)
            try:
                async with self._get_session().request(
                    method, self.base_url + path, data=data, timeout=self._timeout(timeout_s), headers=headers,
                ) as response:
                    if span is not None:
                        span.set_attribute("http.response.status_code", response.status)
                    body = await response.read()
                    if response.status >= 400:
                        raise self.scrub(status_error(response.status, response.reason or "", response.headers, body,
                                                      self.provider, model))
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise self.scrub(self.transport_error(exc, model)) from None
        return body

    async def stream_lines(self, path: str, payload: Any, *, model: str, timeout_s: float | None = None,
                           accept: str = "text/event-stream", extra_headers: Mapping[str, str] | None = None
                           ) -> AsyncIterator[bytes]:
        """POST a JSON body and yield the answer's lines (without line endings) as they arrive.

        Closing the generator (consumer stopped, or cancelled) closes the upstream response.
        """
        started = False
        data = self.encode(payload)
        headers = {"content-type": "application/json", "accept": accept, **(extra_headers or {})}
        span = tracing.start("POST", self._attrs("POST", path), kind="client")  # not current: it spans yields
        self._outbound(headers, span)
        failure: Exception | None = None
        try:
            async with self._get_session().post(
                self.base_url + path, data=data, timeout=self._timeout(timeout_s), headers=headers,
            ) as response:
                if span is not None:
                    span.set_attribute("http.response.status_code", response.status)
                if response.status >= 400:
                    body = await response.read()
                    raise self.scrub(status_error(response.status, response.reason or "", response.headers, body,
                                                  self.provider, model))
                started = True
                async for line in response.content:
                    yield line.rstrip(b"\r\n")
        except (TimeoutError, aiohttp.ClientError) as exc:
            failure = self.scrub(self.transport_error(exc, model, started=started))
            raise failure from None
        except Exception as exc:
            failure = exc
            raise
        finally:
            tracing.end(span, failure)

    async def events(self, path: str, payload: Any, decoder: LineDecoder, *, model: str,
                     timeout_s: float | None = None, accept: str = "text/event-stream"
                     ) -> AsyncIterator[ProviderEvent]:
        """Stream `path` through a provider's line decoder: its deltas as they come, then its StreamEnd.

        The body is read to its end even after the terminator, so the connection returns to the pool; a cut
        after the terminator loses nothing. Closing this generator early closes the upstream response.
        """
        try:
            async for line in self.stream_lines(path, payload, model=model, timeout_s=timeout_s, accept=accept):
                delta = decoder.feed(line.decode("utf-8", "replace"))
                if delta is not None:
                    yield delta
                if decoder.pending:
                    for tool_delta in decoder.pending:
                        yield tool_delta
                    decoder.pending.clear()
        except (UpstreamProtocolError, UpstreamConnectError):  # transport failures (timeouts included)
            if not decoder.finished:
                raise
        except ProviderError as exc:
            raise self.scrub(exc) from None
        yield decoder.end()

    def _attrs(self, method: str, path: str) -> dict[str, Any]:
        return {"http.request.method": method, "url.full": self.base_url + path, **self._server}

    @staticmethod
    def _outbound(headers: dict[str, str], span: Any) -> None:
        """The request's id and (tracing on) the trace context, for the upstream's own logs and traces."""
        clock = current_clock.get()
        if clock is not None and clock.request_id:
            headers["x-request-id"] = clock.request_id
        if span is not None:
            tracing.inject(headers, span)

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def _retry_after(headers: Mapping[str, str]) -> float | None:
    ms = headers.get("retry-after-ms")
    if ms:
        value = parse_retry_after(ms)
        return None if value is None else value / 1000
    return parse_retry_after(headers.get("retry-after"))


def status_error(status: int, reason: str, headers: Mapping[str, str], body: bytes, provider: str,
                 model: str) -> UpstreamStatusError:
    """An UpstreamStatusError from an error response, with the vendor's message and type if present."""
    message, etype = _error_details(body)
    return UpstreamStatusError(
        f"{provider} answered {status}: {message or reason}",
        status=status,
        provider=provider,
        model=model,
        retry_after=_retry_after(headers),
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


__all__ = ["HttpUpstream", "status_error"]
