"""One POST through an aiohttp session, without the general machinery of `ClientSession._request` that a tuned
session (rhetor.providers.aio.new_session) never uses: client traces, middlewares, proxies, netrc and the
environment, basic auth, a total timeout, per-request cookies, params, compression, chunking, 100-continue,
upload trackers, retries (a POST is not retried), `raise_for_status`.

aiohttp's `_request` sets up and checks all of those for every request: with its request context manager, ~42k
instructions of a ~274k request (benchmarks/README.md, round 7). `post` does, in the same order, what `_request`
does for the rest: the session's headers merged, its cookie jar read and updated, the connection taken from the
connector, the response parameters, the request sent and the response started, redirects followed (each hop as
aiohttp's: method, body, headers dropped across origins, `max_redirects` 10), the request body closed, the
errors aiohttp raises (ConnectionTimeoutError, ClientOSError for a bare OSError, ...). A session or a call that
uses any of the above goes to `_request` itself (`plain`, the `timeout.total` and URL checks).

Copied from aiohttp 3.14.x's `ClientSession._request`: used only with that release (rhetor.providers.aio.TUNED).
Knows nothing of providers, vendors, or Rhetor's errors.
"""

from __future__ import annotations

import sys
from time import monotonic

import aiohttp
from aiohttp import hdrs
from aiohttp.client import _has_no_authority
from aiohttp.client_reqrep import ClientResponse, ConnectionKey
from aiohttp.connector import HTTP_AND_EMPTY_SCHEMA_SET, BaseConnector, Connection
from aiohttp.helpers import EMPTY_BODY_METHODS, TimerNoop, strip_auth_from_url
from aiohttp.payload import BytesPayload
from aiohttp.streams import StreamReader
from yarl import URL

from rhetor.providers.aio import TUNED, EagerRequest, LazyReadTimeout

REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10  # aiohttp's default
_TIMER = TimerNoop()  # what aiohttp's TimeoutHandle gives without a total timeout (stateless)


def plain(session: aiohttp.ClientSession) -> bool:
    """Whether `post` may send for this session: the pinned aiohttp, Rhetor's request class, and none of the
    session-wide features `post` leaves out."""
    return (TUNED and session._request_class is EagerRequest and not session._trace_configs
            and not session._middlewares and session._default_proxy is None and not session._trust_env
            and session._default_auth is None and session._base_url is None and not session._raise_for_status
            and not session._skip_auto_headers and session._connector is not None)


async def post(session: aiohttp.ClientSession, url: URL | str, data: bytes, headers: dict[str, str],
               limits: aiohttp.ClientTimeout) -> ClientResponse:
    """`session.request("POST", url, data=data, headers=headers, timeout=limits)` for a `plain` session."""
    timeout = limits
    connector = session._connector
    if (connector is None or connector.closed or timeout.total is not None or type(url) is not URL
            or url.raw_user is not None or url.raw_password is not None or not url.raw_host
            or url.scheme not in connector.allowed_protocol_schema_set):
        return await session._request("POST", url, data=data, headers=headers, timeout=timeout)
    jar = session._cookie_jar
    merged = session._prepare_headers(headers)
    method = "POST"
    body: object = data
    redirects = 0
    history: list[ClientResponse] = []
    auth: aiohttp.BasicAuth | None = None
    req: EagerRequest | None = None
    resp: ClientResponse | None = None
    try:
        while True:
            url, from_url = strip_auth_from_url(url)
            if not url.raw_host:
                raise aiohttp.InvalidUrlRedirectClientError(url)
            if auth is None or from_url is not None:  # (only a redirect's URL can carry credentials here)
                auth = from_url
            if auth is not None and hdrs.AUTHORIZATION in merged:
                raise ValueError("Cannot combine AUTHORIZATION header with AUTH argument or credentials encoded in "
                                 "URL")
            req = EagerRequest(method, url, params={}, headers=merged, data=body, cookies=jar.filter_cookies(url),
                               auth=auth, version=session._version, loop=session._loop,
                               response_class=session._response_class, timer=_TIMER, session=session, traces=[])
            conn = pooled(connector, req.connection_key)
            if conn is None:
                try:
                    conn = await connector.connect(req, traces=[], timeout=timeout)
                except TimeoutError as exc:
                    raise aiohttp.ConnectionTimeoutError(f"Connection timeout to host {req.url}") from exc
            protocol = conn.protocol
            assert protocol is not None
            if type(protocol) is LazyReadTimeout:  # (its positional twin: ten keywords cost ~4k a call)
                protocol.response_params(_TIMER, method in EMPTY_BODY_METHODS, True, session._auto_decompress,
                                         timeout.sock_read, session._read_bufsize,
                                         connector._timeout_ceil_threshold, session._max_line_size,
                                         session._max_field_size, session._max_headers)
            else:
                protocol.set_response_params(
                    timer=_TIMER, skip_payload=method in EMPTY_BODY_METHODS, read_until_eof=True,
                    auto_decompress=session._auto_decompress, read_timeout=timeout.sock_read,
                    read_bufsize=session._read_bufsize, timeout_ceil_threshold=connector._timeout_ceil_threshold,
                    max_line_size=session._max_line_size, max_field_size=session._max_field_size,
                    max_headers=session._max_headers)
            try:
                try:
                    resp = await req.send(conn)
                    try:
                        await resp.start(conn)
                    except BaseException:
                        resp.close()
                        raise
                except BaseException:
                    conn.close()
                    raise
            except aiohttp.ClientError:
                raise
            except OSError as exc:
                if exc.errno is None and isinstance(exc, TimeoutError):
                    raise
                raise aiohttp.ClientOSError(*exc.args) from exc
            if resp._raw_cookie_headers:
                jar.update_cookies_from_headers(resp._raw_cookie_headers, resp.url)
            if resp.status not in REDIRECTS:
                break
            # a redirect, as aiohttp follows it
            redirects += 1
            history.append(resp)
            if redirects >= MAX_REDIRECTS:
                if req._body is not None:
                    await req._body.close()
                resp.close()
                raise aiohttp.TooManyRedirects(history[0].request_info, tuple(history))
            if (resp.status == 303 and resp.method != hdrs.METH_HEAD) or (
                    resp.status in (301, 302) and resp.method == hdrs.METH_POST):
                method = hdrs.METH_GET
                body = None
                if merged.get(hdrs.CONTENT_LENGTH):
                    merged.pop(hdrs.CONTENT_LENGTH)
            else:
                if req._body is not None and req._body.consumed:
                    resp.close()
                    raise aiohttp.ClientPayloadError("Cannot follow redirect with a consumed request body. Use "
                                                     "bytes, a seekable file-like object, or set "
                                                     "allow_redirects=False.")
                body = req._body
            r_url = resp.headers.get(hdrs.LOCATION) or resp.headers.get(hdrs.URI)
            if r_url is None:
                break
            resp.release()
            try:
                parsed = URL(r_url, encoded=not session._requote_redirect_url)
            except ValueError as e:
                if req._body is not None:
                    await req._body.close()
                resp.close()
                raise aiohttp.InvalidUrlRedirectClientError(
                    r_url, "Server attempted redirecting to a location that does not look like a URL") from e
            scheme = parsed.scheme
            if scheme not in HTTP_AND_EMPTY_SCHEMA_SET:
                if req._body is not None:
                    await req._body.close()
                resp.close()
                raise aiohttp.NonHttpUrlRedirectClientError(r_url)
            if not scheme or (scheme == url.scheme and _has_no_authority(r_url, scheme)):
                parsed = url.join(parsed)
            try:
                origin = parsed.origin()
            except ValueError as origin_error:
                if req._body is not None:
                    await req._body.close()
                resp.close()
                raise aiohttp.InvalidUrlRedirectClientError(parsed, "Invalid redirect URL origin") from origin_error
            if url.origin() != origin:
                merged.popall(hdrs.AUTHORIZATION, None)
                merged.popall(hdrs.COOKIE, None)
                merged.popall(hdrs.PROXY_AUTHORIZATION, None)
                auth = None
            url = parsed
            resp.release()
        body_payload = req._body
        if body_payload is not None and type(body_payload) is not BytesPayload:  # (a BytesPayload's is a no-op)
            await body_payload.close()
        if history:
            resp._history = tuple(history)
        return resp
    except BaseException:
        if resp is not None:
            resp.close()
        if req is not None and req._body is not None:
            await req._body.close()
        raise


def pooled(connector: BaseConnector, key: ConnectionKey) -> Connection | None:
    """A kept-alive connection for `key` from the connector's pool, as the connector's own `connect` takes one
    first (its `_get`, without traces: two coroutines fewer a request); None when the pool has none alive, and
    `connect` then makes one."""
    conns = connector._conns.get(key)
    if conns is None:
        return None
    now = monotonic()
    keepalive = connector._keepalive_timeout
    while conns:
        proto, t0 = conns.popleft()
        if proto.is_connected() and (keepalive is None or now - t0 <= keepalive):
            if not conns:  # the very last connection was reclaimed: drop the key
                del connector._conns[key]
            connector._acquired.add(proto)
            if connector._limit_per_host:
                connector._acquired_per_host[key].add(proto)
            return Connection(connector, key, proto, connector._loop)
        transport = proto.transport  # not reusable: closed
        proto.close()
        if not connector._cleanup_closed_disabled and key.is_ssl:
            connector._cleanup_closed_transports.append(transport)
    del connector._conns[key]
    return None


def received_body(resp: ClientResponse) -> bytes | None:
    """The body of a response received whole, taken as `await resp.read()` would take it; None when it is not
    (more to come, chunked, several buffers, already read, traced): then `resp.read()` it is.

    What `read()` does then is ~20k instructions (upstream client micro, benchmarks/README.md round 7): three
    coroutines, two `readany` rounds, and `resume_reading` on the connection's protocol, whose `data_received(b"")`
    walks the whole parser path. Here the one buffer is taken with the reader's own accounting; `resume_reading`
    is left out only when reading is not paused, where all it would do is feed the parser no bytes.
    """
    content = resp.content
    if (type(content) is not StreamReader or not content._eof or content._exception is not None
            or len(content._buffer) != 1 or content._buffer_offset or content._http_chunk_splits is not None
            or resp._body is not None or resp._traces or resp._connection is not None
            or resp._ClientResponse__writer is not None):  # type: ignore[attr-defined]
        return None
    protocol = content._protocol
    if protocol._reading_paused or protocol._buffer_paused:
        return None
    content.set_read_chunk_size(sys.maxsize)  # as read(): the limits of a reader read to its end
    body: bytes = content._buffer.popleft()
    content._size -= len(body)
    content._cursor += len(body)
    resp._body = body
    return body


__all__ = ["MAX_REDIRECTS", "plain", "pooled", "post", "received_body"]
