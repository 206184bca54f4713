"""aiohttp-specific tuning of the upstream client: the ClientSession that rhetor.providers.http sends through,
with two subclasses of aiohttp's internals that cut per-request CPU without changing what goes on the wire or
when a read times out.

- `LazyReadTimeout` (the connector's protocol): aiohttp re-arms the `sock_read` timer - a cancelled TimerHandle
  and a new one - at every request and every network read. This keeps one timer per connection and moves a
  deadline; the timer, when it fires, compares the clock with the deadline and re-arms for the remaining time,
  so a stalled upstream still times out `sock_read` seconds after its last byte (before the headers or
  mid-body, streaming or not).
- `EagerRequest`: on CPython 3.11, aiohttp writes every request body from a Task of its own (created, scheduled,
  run a loop iteration later). A small bytes body (<= EAGER_MAX) is written here, headers and body in the one
  transport.write aiohttp itself coalesces them into, before `send` returns: no task. Its `__init__` sets up the
  plain request Rhetor sends (a small bytes body or none, no cookies, auth, proxy, compression or chunking) with
  the same headers in the same order as aiohttp's ten `update_*` calls, without them (~20k instructions a
  request, benchmarks/README.md round 7).

Both copy the shape of aiohttp's own code, so both are used only with the aiohttp release we pin
(requirements.lock, PINNED); any other version gets aiohttp's stock classes. Imported with the first upstream
session (aiohttp is lazy, rhetor.lazy). Knows nothing of providers, vendors, or Rhetor's errors.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import traceback
from typing import TYPE_CHECKING, Any, cast

import aiohttp
from aiohttp import hdrs
from aiohttp.client_exceptions import ClientPayloadError
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ClientRequest, ClientResponse
from aiohttp.helpers import TimerNoop
from aiohttp.http import SERVER_SOFTWARE, HttpResponseParser, HttpVersion, HttpVersion10, HttpVersion11
from aiohttp.http_writer import StreamWriter, _serialize_headers
from aiohttp.payload import BytesPayload
from multidict import CIMultiDict
from yarl import URL

if TYPE_CHECKING:
    from aiohttp.connector import Connection

PINNED = "3.14."  # the aiohttp release line these classes were copied from (requirements.lock: aiohttp==3.14.5)
TUNED = aiohttp.__version__.startswith(PINNED)
EAGER_MAX = 2**16  # bytes of body written at once; a larger one goes aiohttp's way (a task, drained as it goes)
_PLAIN_METHODS = ClientRequest.ALL_METHODS  # upper case, free of control characters (aiohttp checks others)
_AUTO_HEADERS = (*ClientRequest.DEFAULT_HEADERS.items(), (hdrs.USER_AGENT, SERVER_SOFTWARE))


class LazyReadTimeout(ResponseHandler):
    """aiohttp's ResponseHandler with one read-timeout timer per connection: see the module's docstring.

    `_deadline` is when the current read times out (None: no read pending); `_armed_at` is when the timer, if
    any (`_read_timeout_handle`), fires. The timer never fires later than the deadline: a deadline earlier than
    the armed time (a shorter `sock_read` on a reused connection) re-arms it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._deadline: float | None = None
        self._armed_at = 0.0

    def _reschedule_timeout(self) -> None:
        timeout = self._read_timeout
        if not timeout:
            self._deadline = None
            return
        deadline = self._deadline = self._loop.time() + timeout
        handle = self._read_timeout_handle
        if handle is None or self._armed_at > deadline:
            if handle is not None:
                handle.cancel()
            self._armed_at = deadline
            self._read_timeout_handle = self._loop.call_at(deadline, self._timer_fired)

    def start_timeout(self) -> None:
        self._reschedule_timeout()

    def response_params(self, timer: Any, skip_payload: bool, read_until_eof: bool, auto_decompress: bool,
                        read_timeout: float | None, read_bufsize: int, timeout_ceil_threshold: float,
                        max_line_size: int, max_field_size: int, max_headers: int) -> None:
        """aiohttp's `set_response_params`, its arguments in order (rhetor.providers.aio_request)."""
        self._skip_payload = skip_payload
        self._read_bufsize = read_bufsize
        self._read_timeout = read_timeout
        self._timeout_ceil_threshold = timeout_ceil_threshold
        self._parser = HttpResponseParser(
            self, self._loop, read_bufsize, timer=timer, payload_exception=ClientPayloadError,
            response_with_body=not skip_payload, read_until_eof=read_until_eof, auto_decompress=auto_decompress,
            max_line_size=max_line_size, max_field_size=max_field_size, max_headers=max_headers)
        self._drain_tail()

    def resume_reading(self, resume_parser: bool = True) -> None:
        """aiohttp's, only when something is paused. Its StreamReader calls this after every chunk it hands out
        (a stream: every network read) and at the body's end; with nothing paused, aiohttp's own fed the parser
        no bytes (its Python `data_received` and the C parser's `feed_data` for nothing: the parser only holds
        bytes back once `pause_reading` paused it) and resumed a transport that was not paused."""
        if self._reading_paused or self._buffer_paused:
            super().resume_reading(resume_parser)

    def _drop_timeout(self) -> None:
        self._deadline = None  # the timer stays armed: it finds no deadline when it fires

    def _timer_fired(self) -> None:
        self._read_timeout_handle = None
        deadline = self._deadline
        if deadline is None:
            return
        if self._loop.time() < deadline:  # data came since the timer was armed: wait for the rest
            self._armed_at = deadline
            self._read_timeout_handle = self._loop.call_at(deadline, self._timer_fired)
            return
        self._deadline = None
        self._on_read_timeout()

    def connection_lost(self, exc: BaseException | None) -> None:
        handle = self._read_timeout_handle
        if handle is not None:  # a closed connection holds no timer (nor the loop a reference to it)
            handle.cancel()
            self._read_timeout_handle = None
        super().connection_lost(exc)


class EagerRequest(ClientRequest):
    """aiohttp's ClientRequest, sending a small bytes body without a task: see the module's docstring.

    Anything else (no body, a larger or streamed body, 100-continue, compression, chunking, a proxy, client
    traces, an upload tracker, a paused or closing transport) goes through aiohttp's own `send`.
    """

    _plain = False  # set up by our __init__: the Content-Length is the body's own

    def __init__(self, method: str, url: URL, *, params: Any = None, headers: Any = None,
                 skip_auto_headers: Any = None, data: Any = None, cookies: Any = None, auth: Any = None,
                 version: HttpVersion = HttpVersion11, compress: Any = None, chunked: Any = None,
                 expect100: bool = False, loop: asyncio.AbstractEventLoop | None = None,
                 response_class: type[ClientResponse] | None = None, proxy: URL | None = None,
                 proxy_auth: Any = None, timer: Any = None, session: Any = None, ssl: Any = True,
                 proxy_headers: Any = None, traces: Any = None, trust_env: bool = False,
                 server_hostname: str | None = None) -> None:
        # aiohttp's __init__ makes ten update_* calls, a payload registry lookup and two header multidicts per
        # request. The plain case Rhetor sends (a small bytes body or none, headers of its own, nothing of
        # cookies, auth, proxies, compression, chunking or 100-continue) is set up here with the same headers
        # in the same order; anything else goes aiohttp's way (as does a header whose presence makes aiohttp's
        # __init__ do more than add it: host, length, chunking, 100-continue, compression, cookies).
        if (type(headers) is not CIMultiDict or params or cookies or auth is not None or proxy is not None
                or compress or chunked is not None or expect100 or skip_auto_headers is not None
                or method not in _PLAIN_METHODS or version is not HttpVersion11 or loop is None or loop.get_debug()
                or (data is not None and (type(data) is not bytes or len(data) > EAGER_MAX))
                or url.raw_user is not None or url.raw_password is not None or not url.raw_host
                or url.raw_fragment or hdrs.HOST in headers or hdrs.CONTENT_LENGTH in headers
                or hdrs.TRANSFER_ENCODING in headers or hdrs.EXPECT in headers or hdrs.CONTENT_ENCODING in headers
                or hdrs.COOKIE in headers):
            super().__init__(method, url, params=params, headers=headers, skip_auto_headers=skip_auto_headers,
                             data=data, cookies=cookies, auth=auth, version=version, compress=compress,
                             chunked=chunked, expect100=expect100, loop=loop, response_class=response_class,
                             proxy=proxy, proxy_auth=proxy_auth, timer=timer, session=session, ssl=ssl,
                             proxy_headers=proxy_headers, traces=traces, trust_env=trust_env,
                             server_hostname=server_hostname)
            return
        self._session = session
        self.original_url = self.url = url
        self.method = method
        self.chunked = self.compress = self.length = None
        self.loop = loop
        self.response_class = ClientResponse if response_class is None else response_class
        self._timer = timer if timer is not None else TimerNoop()
        self._ssl = ssl if ssl is not None else True
        self.server_hostname = server_hostname
        self.version = version
        self.headers = out = CIMultiDict(((hdrs.HOST, cast("str", url.host_port_subcomponent)),))
        out.extend(headers)
        for name, value in _AUTO_HEADERS:
            if name not in out:
                out[name] = value
        self.proxy = self.proxy_auth = self.proxy_headers = None
        if data is None:
            self._body = None
            if method not in ClientRequest.GET_METHODS:
                out[hdrs.CONTENT_LENGTH] = "0"
        else:
            self._body = body = BytesPayload(data)
            out[hdrs.CONTENT_LENGTH] = str(len(data))
            if hdrs.CONTENT_TYPE not in out:
                out[hdrs.CONTENT_TYPE] = body.content_type
        self._traces = [] if traces is None else traces
        self._plain = True

    async def send(self, conn: Connection) -> ClientResponse:
        body = self._body
        protocol = conn.protocol
        if (type(body) is not BytesPayload or body.size is None or body.size > EAGER_MAX
                or protocol is None or protocol.writing_paused or self._continue is not None
                or self.compress or self.chunked is not None or self._traces or self.proxy is not None
                or self._upload_tracker is not None or self.method == hdrs.METH_CONNECT):
            return await super().send(conn)
        transport = protocol.transport
        if transport is None or transport.is_closing():
            return await super().send(conn)
        headers = self.headers
        # as aiohttp's send: default content type, connection header, status line
        if (self.method in self.POST_METHODS and (self._skip_auto_headers is None
                                                  or hdrs.CONTENT_TYPE not in self._skip_auto_headers)
                and hdrs.CONTENT_TYPE not in headers):
            headers[hdrs.CONTENT_TYPE] = "application/octet-stream"
        v = self.version
        if hdrs.CONNECTION not in headers:
            if conn._connector.force_close:
                if v == HttpVersion11:
                    headers[hdrs.CONNECTION] = "close"
            elif v == HttpVersion10:
                headers[hdrs.CONNECTION] = "keep-alive"
        value: bytes = body._value
        if not self._plain:  # (ours set the length from the body itself)
            content_length = self._get_content_length()
            if content_length is not None:  # as BytesPayload.write_with_length
                value = value[:content_length]
        data = _serialize_headers(f"{self.method} {self.url.raw_path_qs} HTTP/{v.major}.{v.minor}", headers) + value
        transport.write(data)
        if protocol.writing_paused:  # as aiohttp's write_eof: wait for the transport's buffer to drain
            writer = StreamWriter(protocol, self.loop)
            writer.set_eof()  # headers and body sent: marks the writer finished, writes nothing
            await writer.drain()
        protocol.start_timeout()
        response_class = self.response_class
        if response_class is not ClientResponse:
            self.response = response = response_class(
                self.method, self.original_url, writer=None, continue100=None, timer=self._timer,
                request_info=self.request_info, traces=self._traces, loop=self.loop, session=self._session,
                stream_writer=cast("StreamWriter", _Sent(len(data))))
            return response
        # aiohttp's own response: its __init__ (ten keyword arguments) for a request already sent, inline
        self.response = response = ClientResponse.__new__(ClientResponse)
        url = self.original_url
        response.method = self.method
        response._real_url = url
        response._url = url.with_fragment(None) if url.raw_fragment else url
        response._output_size = len(data)
        response._request_info = self.request_info
        response._timer = self._timer
        response._cache = {}
        response._traces = self._traces
        response._loop = loop = self.loop
        session = self._session
        if session is not None:
            response._session = session
            response._resolve_charset = session._resolve_charset
        if loop.get_debug():
            response._source_traceback = traceback.extract_stack(sys._getframe(1))
        return response


class _Sent:
    """What aiohttp's response reads of the writer of a request already sent: its size."""

    __slots__ = ("output_size",)

    def __init__(self, size: int) -> None:
        self.output_size = size


def new_session(headers: dict[str, str], *, read_bufsize: int) -> aiohttp.ClientSession:
    """A pooled session for one upstream, tuned when aiohttp is the pinned release."""
    connector = aiohttp.TCPConnector(limit=512, keepalive_timeout=30, ttl_dns_cache=300)
    extra: dict[str, Any] = {}
    if TUNED:
        connector._factory = cast("functools.partial[ResponseHandler]",
                                  functools.partial(LazyReadTimeout, loop=connector._loop))
        extra["request_class"] = EagerRequest
    return aiohttp.ClientSession(connector=connector, headers=headers, read_bufsize=read_bufsize,
                                 auto_decompress=True, **extra)


__all__ = ["EAGER_MAX", "PINNED", "TUNED", "EagerRequest", "LazyReadTimeout", "new_session"]
