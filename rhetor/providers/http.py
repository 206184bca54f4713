"""HTTP plumbing shared by the HTTP providers: one lazily created, pooled aiohttp session per provider, and
the mapping of transport failures and error statuses onto the error tree.

aiohttp rather than httpx on the hot path: measured against the zero-delay upstream on one core, an aiohttp
session sustains ~9,800 requests/s where httpx.AsyncClient manages ~1,200 (see benchmarks/README.md). The session
itself, and its tuning of aiohttp's internals, come from rhetor.providers.aio.
Knows no vendor's body format beyond "find the error message"; scrubs the API key from every error.
Every call forwards the request's `x-request-id` and, when tracing is on, runs in a CLIENT span whose context
goes upstream as `traceparent`/`tracestate` (rhetor.observability.tracing; off, that costs one ContextVar read).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Mapping
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

MAX_TIMEOUTS = 64  # distinct read limits kept (a route's timeout_s values: a handful)
MAX_URLS = 64  # distinct paths kept per upstream (an API's endpoints: a handful)
MAX_LINE = 2**21  # bytes of one stream line, as aiohttp's own readline allowed (twice read_bufsize)


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
        # rhetor.providers.aio_request.post when the session is `plain` (decided per session)
        self._post: Callable[..., Awaitable[aiohttp.ClientResponse]] | None = None
        self._received: Callable[[aiohttp.ClientResponse], bytes | None] | None = None  # with _post
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}  # per read limit: immutable, so shared
        self._urls: dict[str, Any] = {}  # path -> its parsed (yarl) URL: immutable, so shared
        url = urlsplit(self.base_url)
        self._server = {"server.address": url.hostname or "", "server.port": url.port or (443 if url.scheme ==
                                                                                          "https" else 80)}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            from rhetor.providers import aio  # imports aiohttp: with the first session, not at start

            self._session = session = aio.new_session(self._headers, read_bufsize=2**20)
            if aio.TUNED:  # aio_request reads aiohttp's private names of the pinned release: imported only then
                from rhetor.providers.aio_request import plain, post, received_body

                self._post, self._received = (post, received_body) if plain(session) else (None, None)
        return self._session

    def _timeout(self, timeout_s: float | None) -> aiohttp.ClientTimeout:
        """A per-request `timeout_s` bounds the connect and each read, not the whole (possibly long) stream."""
        limit = timeout_s if timeout_s is not None else self._timeout_s
        timeout = self._timeouts.get(limit)
        if timeout is None:  # built once per value (9k instructions a request, measured): a route sets a handful
            if len(self._timeouts) >= MAX_TIMEOUTS:
                self._timeouts.clear()
            timeout = self._timeouts[limit] = aiohttp.ClientTimeout(total=None, sock_connect=min(limit,
                                                                    self._connect_s), sock_read=limit)
        return timeout

    def _url(self, path: str) -> Any:
        """`base_url + path` as aiohttp's URL, parsed once per path (aiohttp takes a URL as is, a string it parses
        per request); a string yarl refuses goes to aiohttp as given, for its own error."""
        url = self._urls.get(path)
        if url is None:
            from yarl import URL  # loaded with aiohttp (rhetor.lazy), by the time a request is sent

            full = self.base_url + path
            try:
                url = URL(full)
            except (ValueError, TypeError):
                return full
            if len(self._urls) >= MAX_URLS:
                self._urls.clear()
            self._urls[path] = url
        return url

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

    def request_bytes(self, method: str, path: str, payload: Any = None, *, model: str = "",
                      timeout_s: float | None = None, extra_headers: Mapping[str, str] | None = None
                      ) -> Coroutine[Any, Any, bytes]:
        """Send (optionally) a JSON body (plus per-request headers) and return the answer's body as received.
        A plain function handing back the call's coroutine: with tracing off, no coroutine layer of its own."""
        data = self.encode(payload) if payload is not None else None
        headers = {"content-type": "application/json"} if data is not None else {}
        if extra_headers:
            headers.update(extra_headers)
        if tracing.active() is None:  # tracing off: no span, no attribute dicts; `_outbound` inline
            clock = current_clock.get()
            if clock is not None and clock.request_id:
                headers["x-request-id"] = clock.request_id
            return self._send(method, path, data, headers, timeout_s, model, None)
        return self._traced(method, path, data, headers, timeout_s, model)

    async def _traced(self, method: str, path: str, data: bytes | None, headers: dict[str, str],
                      timeout_s: float | None, model: str) -> bytes:
        with tracing.span(method, self._attrs(method, path), kind="client") as span:
            self._outbound(headers, span)
            return await self._send(method, path, data, headers, timeout_s, model, span)

    async def _send(self, method: str, path: str, data: bytes | None, headers: dict[str, str],
                    timeout_s: float | None, model: str, span: Any) -> bytes:
        # `await` + `read()` rather than `async with`: read() releases the connection at the body's end and
        # closes it on any failure, so the context manager's exit only repeated that (~18k instructions/request).
        # session, timeout and URL looked up inline (three calls fewer; with this commit's other trims oa 829k -> 815k)
        session = self._session
        if session is None or session.closed:
            session = self._get_session()
        timeout = self._timeouts.get(self._timeout_s if timeout_s is None else timeout_s) or self._timeout(timeout_s)
        # POSTs past aiohttp's general `_request`, a body received whole taken without `read()`
        # (rhetor.providers.aio_request: ~42k and ~20k instructions a request)
        post, received = self._post, self._received
        try:
            if post is not None and method == "POST" and data is not None:
                response = await post(session, self._url(path), data, headers, timeout)
            else:
                response = await session.request(method, self._url(path), data=data, timeout=timeout,
                                                 headers=headers)
            if span is not None:
                span.set_attribute("http.response.status_code", response.status)
            body = received(response) if received is not None else None
            if body is None:
                body = await response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self.scrub(self.transport_error(exc, model)) from None
        if response.status >= 400:
            raise self.scrub(status_error(response.status, response.reason or "", response.headers, body,
                                          self.provider, model))
        return body

    async def stream_batches(self, path: str, payload: Any, *, model: str, timeout_s: float | None = None,
                             accept: str = "text/event-stream", extra_headers: Mapping[str, str] | None = None
                             ) -> AsyncGenerator[list[bytes], None]:
        """POST a JSON body and yield the answer's complete lines (without line endings), a list per network read
        (never empty), as they arrive; a last line without a line ending comes at the end of the body.

        Read by chunk and split here, not with the stream's readline: one await per read instead of one per line
        (an 8-event OpenAI stream: 19 readline calls became 1 read). A line longer than MAX_LINE is a protocol
        error. Closing the generator (consumer stopped, or cancelled) closes the upstream response.
        """
        started = False
        data = self.encode(payload)
        headers = {"content-type": "application/json", "accept": accept, **(extra_headers or {})}
        span = tracing.start("POST", self._attrs("POST", path), kind="client") \
            if tracing.active() is not None else None  # not current: it spans yields
        self._outbound(headers, span)
        failure: Exception | None = None
        try:
            session = self._session
            if session is None or session.closed:
                session = self._get_session()
            timeout = self._timeouts.get(self._timeout_s if timeout_s is None else timeout_s) \
                or self._timeout(timeout_s)
            post = self._post
            response = await (post(session, self._url(path), data, headers, timeout) if post is not None else
                              session.post(self._url(path), data=data, timeout=timeout, headers=headers))
            async with response:
                if span is not None:
                    span.set_attribute("http.response.status_code", response.status)
                if response.status >= 400:
                    body = await response.read()
                    raise self.scrub(status_error(response.status, response.reason or "", response.headers, body,
                                                  self.provider, model))
                started = True
                rest = b""
                # `readany` itself, not `iter_any()`: its iterator only awaits it and turns b"" (the end) into
                # StopAsyncIteration (one coroutine layer per network read)
                read = response.content.readany
                while chunk := await read():
                    buffer = rest + chunk if rest else chunk
                    lines = buffer.split(b"\n")
                    rest = lines.pop()
                    if len(rest) > MAX_LINE:
                        raise UpstreamProtocolError(f"{self.provider} sent a line over {MAX_LINE} bytes",
                                                    provider=self.provider, model=model)
                    if lines:  # (CRLF line endings only when there is a CR: no comprehension otherwise)
                        yield [line.rstrip(b"\r") for line in lines] if b"\r" in buffer else lines
                if rest:
                    yield [rest.rstrip(b"\r")]
        except (TimeoutError, aiohttp.ClientError) as exc:
            failure = self.scrub(self.transport_error(exc, model, started=started))
            raise failure from None
        except Exception as exc:
            failure = exc
            raise
        finally:
            tracing.end(span, failure)

    async def stream_lines(self, path: str, payload: Any, *, model: str, timeout_s: float | None = None,
                           accept: str = "text/event-stream", extra_headers: Mapping[str, str] | None = None
                           ) -> AsyncIterator[bytes]:
        """`stream_batches`, one line at a time."""
        batches = self.stream_batches(path, payload, model=model, timeout_s=timeout_s, accept=accept,
                                      extra_headers=extra_headers)
        try:
            async for lines in batches:
                for line in lines:
                    yield line
        finally:
            await batches.aclose()

    async def events(self, path: str, payload: Any, decoder: LineDecoder, *, model: str,
                     timeout_s: float | None = None, accept: str = "text/event-stream"
                     ) -> AsyncIterator[ProviderEvent]:
        """Stream `path` through a provider's line decoder: its deltas as they come, then its StreamEnd.

        The body is read to its end even after the terminator, so the connection returns to the pool; a cut
        after the terminator loses nothing. Closing this generator early closes the upstream response.
        """
        batches = self.stream_batches(path, payload, model=model, timeout_s=timeout_s, accept=accept)
        try:
            async for lines in batches:
                for line in lines:
                    if not line:  # SSE's event separators: no decoder here reads them (half the lines)
                        continue
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
        finally:
            await batches.aclose()
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
