"""A fake Anthropic Messages API: a real HTTP server on 127.0.0.1 speaking the real wire (JSON bodies, the SSE
event sequence, the error envelope and status codes), with scripted one-shot failures for tests.

Good enough that the official `anthropic` SDK talks to it unchanged. Knows nothing of Rhetor: it serves
any client. Runs in a background thread, so shared state is plain lists and a locked deque.
"""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from tests.fakes.listing import ListingState, anthropic_page
from tests.fakes.script import CUT_AFTER_S
from tests.fakes.server import serve_app
from tests.fakes.tools import choose_tool, quote_result, split_json

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

ERROR_TYPES: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request"),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "Not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


@dataclass(frozen=True, slots=True)
class _Action:
    kind: str  # "fail" | "cut" | "error_event" | "delay"
    status: int = 0
    retry_after: float | None = None
    after_chunks: int = 0
    seconds: float = 0.0


def error_body(status: int, message: str | None = None) -> bytes:
    etype, default = ERROR_TYPES.get(status, ("api_error", "Internal server error"))
    return orjson.dumps({"type": "error", "error": {"type": etype, "message": message or default},
                        "request_id": _id("req_")})


def _id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _words(content: Any) -> int:
    if isinstance(content, str):
        return len(content.split())
    if isinstance(content, list):
        return sum(_words(b.get("text", "")) for b in content if isinstance(b, dict))
    return 0


class FakeAnthropic:
    """One fake server's state and script: set `reply_text`, `chunk_delay`; script with the *_next methods."""

    def __init__(self) -> None:
        self.base_url = ""
        self.requests: list[dict[str, Any]] = []
        self.request_headers: list[dict[str, str]] = []
        self.reply_text = "Hello from fake Anthropic"
        self.valid_keys: set[str] | None = {"test-key"}  # None accepts any non-empty key
        self.chunk_delay = 0.0
        self.disconnects = 0  # answers the client walked away from before the server finished them
        self.disconnected = threading.Event()  # set at the first such walk-away (waitable from any thread)
        self.completed = 0
        self.tool_input: dict[str, Any] = {"city": "Paris"}  # a tool call's input, when tools are offered
        self.tool_text = "Let me check."  # the text Claude writes before a tool_use block
        self.raw_requests: list[bytes] = []  # the bodies' bytes exactly as received
        self.usage_extra: dict[str, Any] = {}  # merged into every answer's usage (cache figures, ...)
        self.reply_extra: dict[str, Any] = {}  # merged into every non-streamed message (service_tier, ...)
        self.thinking: str | None = None  # when set and the request asks for thinking: a thinking block first
        self._script: deque[_Action] = deque()
        self._lock = threading.Lock()
        # GET /v1/models (paged by limit/after_id/before_id): what it lists, requests counted, failures, delays
        self.models = ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1", "claude-sonnet-5-5"]
        self.listing = ListingState()

    # -- scripting (consumed in order by the next requests)

    def fail_next(self, status: int, n: int = 1, retry_after: float | None = None) -> None:
        self._push([_Action("fail", status=status, retry_after=retry_after)] * n)

    def cut_next(self, after_chunks: int, n: int = 1) -> None:
        self._push([_Action("cut", after_chunks=after_chunks)] * n)

    def error_event_next(self, after_chunks: int) -> None:
        self._push([_Action("error_event", after_chunks=after_chunks)])

    def delay_next(self, seconds: float, n: int = 1) -> None:
        self._push([_Action("delay", seconds=seconds)] * n)

    def _push(self, actions: list[_Action]) -> None:
        with self._lock:
            self._script.extend(actions)

    def _walked_away(self) -> None:
        self.disconnects += 1
        self.disconnected.set()

    def _pop(self) -> _Action | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    # -- the ASGI app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] == "GET" and scope["path"].rstrip("/") == "/v1/models":
            await self._list_models(scope, send)
            return
        if scope["method"] != "POST" or scope["path"].rstrip("/") != "/v1/messages":
            await _respond(send, 404, error_body(404, f"{scope['method']} {scope['path']} not found"))
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        self.request_headers.append(headers)
        self.raw_requests.append(raw)
        self.requests.append(body if isinstance(body, dict) else {"_raw": raw.decode("utf-8", "replace")})
        problem = self._check(headers, body)
        if problem:
            await _respond(send, problem[0], error_body(*problem))
            return
        action = self._pop()
        watcher = asyncio.ensure_future(receive())  # completes when the client goes away
        try:
            if action and action.kind == "delay":
                await asyncio.wait({watcher}, timeout=action.seconds)
                if watcher.done():
                    self._walked_away()
                    return
            if action and action.kind == "fail":
                wait = action.retry_after
                extra = [] if wait is None else [(b"retry-after", str(wait).encode())]
                await _respond(send, action.status, error_body(action.status), extra)
            elif body.get("stream"):
                await self._stream(body, action, send, watcher)
            elif action and action.kind == "cut":
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"application/json"), (b"content-length", b"512")]})
                # returning without completing the body makes uvicorn drop the connection
            else:
                await _respond(send, 200, orjson.dumps(self._message(body)))
                self.completed += 1
        finally:
            watcher.cancel()

    async def _list_models(self, scope: Scope, send: Send) -> None:
        query = await self.listing.begin(scope)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        problem = self._check(headers, {"max_tokens": 1, "model": "-", "messages": [{"role": "user"}]})
        status = problem[0] if problem else self.listing.fail  # a bad key or version first, as the real API
        if status:
            await _respond(send, status, error_body(status, problem[1] if problem else None))
            return
        await _respond(send, 200, orjson.dumps(anthropic_page(self.models, query, self.listing.page_cap)))

    def _check(self, headers: dict[str, str], body: Any) -> tuple[int, str] | None:
        # x-api-key is the documented header; newer official SDKs send the key as `Authorization: Bearer`.
        bearer = headers.get("authorization", "")
        key = headers.get("x-api-key") or (bearer[7:] if bearer.lower().startswith("bearer ") else "")
        if not key or (self.valid_keys is not None and key not in self.valid_keys):
            return 401, "invalid x-api-key"
        if not headers.get("anthropic-version"):
            return 400, "anthropic-version: header is required"
        if not isinstance(body, dict):
            return 400, "There was an error parsing the body of your request"
        if not isinstance(body.get("max_tokens"), int):
            return 400, "max_tokens: Field required"
        if not isinstance(body.get("model"), str):
            return 400, "model: Field required"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return 400, "messages: at least one message is required"
        if not isinstance(messages[0], dict) or messages[0].get("role") != "user":
            return 400, "messages: first message must use the \"user\" role"
        return _check_tool_results(messages)

    def _tool(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The tool_use block this answer ends with, if any."""
        names = [t["name"] for t in body.get("tools") or [] if isinstance(t, dict) and "name" in t]
        choice = body.get("tool_choice") or {}
        name = choose_tool(names, choice.get("name"), choice.get("type") == "none",
                           _last_tool_result(body["messages"]) is not None)
        return None if name is None else {"type": "tool_use", "id": _id("toolu_"), "name": name,
                                          "input": self.tool_input}

    def _answer(self, body: dict[str, Any]) -> tuple[list[str], str, str | None, int]:
        """(text pieces, stop_reason, stop_sequence, input tokens) — one word is one token here."""
        result = _last_tool_result(body["messages"])
        text = self.reply_text if result is None else quote_result(result.get("content"))
        text, stop_reason, stop_seq = text, "end_turn", None
        for seq in body.get("stop_sequences") or []:
            if seq and seq in text:
                text, stop_reason, stop_seq = text[: text.index(seq)], "stop_sequence", seq
        pieces = re.findall(r"\s*\S+", text)
        if body["max_tokens"] < len(pieces):
            pieces, stop_reason, stop_seq = pieces[: body["max_tokens"]], "max_tokens", None
        prompt = _words(body.get("system")) + sum(_words(m.get("content")) for m in body["messages"])
        return pieces, stop_reason, stop_seq, max(1, prompt)

    def _message(self, body: dict[str, Any]) -> dict[str, Any]:
        pieces, stop_reason, stop_seq, input_tokens = self._answer(body)
        content: list[dict[str, Any]] = [{"type": "text", "text": "".join(pieces)}]
        tool = self._tool(body)
        if tool is not None:
            pieces = re.findall(r"\s*\S+", self.tool_text)
            content = [{"type": "text", "text": self.tool_text}, tool]
            stop_reason, stop_seq = "tool_use", None
        if self.thinking is not None and isinstance(body.get("thinking"), dict):
            content.insert(0, {"type": "thinking", "thinking": self.thinking, "signature": "sig-fake"})
        return {"id": _id("msg_"), "type": "message", "role": "assistant", "model": body["model"],
                "content": content, "stop_reason": stop_reason,
                "stop_sequence": stop_seq,
                "usage": {"input_tokens": input_tokens, "output_tokens": len(pieces),
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, **self.usage_extra},
                **self.reply_extra}

    async def _stream(self, body: dict[str, Any], action: _Action | None, send: Send,
                      watcher: asyncio.Future[Any]) -> None:
        pieces, stop_reason, stop_seq, input_tokens = self._answer(body)
        tool = self._tool(body)
        if tool is not None:
            pieces, stop_reason, stop_seq = re.findall(r"\s*\S+", self.tool_text), "tool_use", None
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8"),
                                (b"cache-control", b"no-cache"), (b"request-id", _id("req_").encode())]})

        async def emit(chunk: bytes) -> bool:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            if watcher.done():
                self._walked_away()
                return False
            return True

        start = {"id": _id("msg_"), "type": "message", "role": "assistant", "model": body["model"],
                 "content": [], "stop_reason": None, "stop_sequence": None,
                 "usage": {"input_tokens": input_tokens, "output_tokens": 1,
                           "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, **self.usage_extra}}
        head = [_sse("message_start", {"type": "message_start", "message": start}),
                _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                             "content_block": {"type": "text", "text": ""}}),
                _sse("ping", {"type": "ping"})]
        limit = action.after_chunks if action and action.kind in ("cut", "error_event") else len(pieces)
        deltas = [_sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "text_delta", "text": p}})
                  for p in pieces[:limit]]
        for chunk in head + deltas:
            if not await emit(chunk):
                return
        if action and action.kind == "cut":
            await asyncio.sleep(CUT_AFTER_S)  # a real cut comes after the bytes were read, not with them
            return  # no message_stop and an unfinished chunked body: uvicorn drops the connection
        if action and action.kind == "error_event":
            err = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            await send({"type": "http.response.body", "body": _sse("error", err), "more_body": False})
            return
        last_block = 0
        if tool is not None:
            last_block = 1
            start_block = {**tool, "input": {}}
            tool_events = [_sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
                           _sse("content_block_start", {"type": "content_block_start", "index": 1,
                                                        "content_block": start_block})]
            tool_events += [_sse("content_block_delta", {"type": "content_block_delta", "index": 1,
                                                         "delta": {"type": "input_json_delta", "partial_json": p}})
                            for p in split_json(orjson.dumps(tool["input"]).decode())]
            for chunk in tool_events:
                if not await emit(chunk):
                    return
        tail = [_sse("content_block_stop", {"type": "content_block_stop", "index": last_block}),
                _sse("message_delta", {"type": "message_delta",
                                       "delta": {"stop_reason": stop_reason, "stop_sequence": stop_seq},
                                       "usage": {"output_tokens": len(pieces)}}),
                _sse("message_stop", {"type": "message_stop"})]
        for chunk in tail:
            if not await emit(chunk):
                return
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        self.completed += 1


def _last_tool_result(messages: list[Any]) -> dict[str, Any] | None:
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    content = last.get("content")
    blocks = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"] \
        if isinstance(content, list) else []
    return blocks[-1] if blocks else None


def _check_tool_results(messages: list[Any]) -> tuple[int, str] | None:
    """As the real API: every tool_result answers a tool_use of the assistant turn just before it."""
    for i, m in enumerate(messages):
        content = m.get("content") if isinstance(m, dict) else None
        if not isinstance(content, list):
            continue
        for block in content:
            if not isinstance(block, dict) or block.get("type") != "tool_result":
                continue
            prev = messages[i - 1].get("content") if i else None
            ids = {b.get("id") for b in prev if isinstance(b, dict) and b.get("type") == "tool_use"} \
                if isinstance(prev, list) else set()
            if block.get("tool_use_id") not in ids:
                return 400, (f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                             f"{block.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                             "`tool_use` block in the previous message.")
    return None


async def _respond(send: Send, status: int, body: bytes,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"request-id", _id("req_").encode()), *(extra or [])]
    if status >= 400:
        retry = status in (408, 409, 429) or status >= 500
        headers.append((b"x-should-retry", b"true" if retry else b"false"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


@contextmanager
def running_fake_anthropic() -> Iterator[FakeAnthropic]:
    """Serve a fresh FakeAnthropic on 127.0.0.1 for the duration of the block."""
    fake = FakeAnthropic()
    with serve_app(fake) as base_url:
        fake.base_url = base_url
        yield fake


__all__ = ["ERROR_TYPES", "FakeAnthropic", "error_body", "running_fake_anthropic"]
