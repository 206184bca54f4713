"""A wire-faithful fake of Ollama's native API, served as a real HTTP server on 127.0.0.1.

POST /api/chat answers one JSON object, or (the default, as in Ollama, unless `"stream": false`) NDJSON lines
`{"model","created_at","message":{"role","content"},"done":false}` ending with a `done: true` line carrying
done_reason, prompt_eval_count and eval_count. Errors use Ollama's body `{"error": "..."}`; an unknown model
is a 404 "model \"x\" not found, try pulling it first". GET /api/tags lists `models`. Scripted one-shot
behaviours (fail_next, cut_next, error_event_next, delay_next) are consumed in order, one per chat request.
Knows nothing of Rhetor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson

from tests.fakes.listing import ListingState
from tests.fakes.script import CUT_AFTER_S, Action, Script, read_body
from tests.fakes.server import serve_app
from tests.fakes.tools import choose_tool, fake_vector, quote_result

ERRORS: dict[int, str] = {  # status -> Ollama's own message for it
    400: "invalid options",
    401: "unauthorized",
    404: 'model "{model}" not found, try pulling it first',
    429: "too many requests",
    500: "llama runner process has terminated: exit status 2",
    503: "server busy, please try again.  maximum pending requests exceeded",
}
STREAM_ERROR = "an error was encountered while running the model: unexpected EOF"


async def send_bytes(send: Any, status: int, body: bytes, content_type: bytes = b"application/json; charset=utf-8",
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


class FakeOllama(Script):
    """The fake's state and ASGI app. Tests set `reply_text`, `chunk_delay`, `models` and read `requests`
    (JSON bodies on /api/chat), `tags_requests` (GETs of /api/tags) and `disconnects` (abandoned streams)."""

    def __init__(self) -> None:
        super().__init__()
        self.base_url = ""  # http://127.0.0.1:PORT, set when served
        self.requests: list[dict[str, Any]] = []
        self.reply_text = "Hello from fake Ollama"
        self.chunk_delay = 0.0
        self.models = ["llama3:latest"]
        self.tags_requests = 0
        self.listing = ListingState()  # GET /api/tags: failures and delays (tests.fakes.listing)
        self.disconnects = 0
        self.tool_arguments: dict[str, Any] = {"city": "Paris"}  # a tool call's arguments, when tools are offered
        self.embed_requests: list[dict[str, Any]] = []

    # ------------------------------------------------------------ (scripting: tests.fakes.script)

    def _resolve(self, name: str) -> str | None:
        """Ollama's model lookup: `llama3` means `llama3:latest`."""
        for candidate in (name, f"{name}:latest"):
            if candidate in self.models:
                return candidate
        return None

    # ------------------------------------------------------------ the ASGI app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        method, path = scope["method"], scope["path"]
        if path == "/api/chat" and method == "POST":
            await self._chat(body, receive, send)
        elif path == "/api/embed" and method == "POST":
            request = orjson.loads(body)
            self.embed_requests.append(request)
            if self._resolve(str(request.get("model"))) is None:
                await send_bytes(send, 404, error_body(ERRORS[404].format(model=request.get("model"))))
                return
            inputs = request["input"] if isinstance(request["input"], list) else [request["input"]]
            await send_bytes(send, 200, orjson.dumps({"model": request["model"],
                                                      "embeddings": [fake_vector(t) for t in inputs],
                                                      "prompt_eval_count": sum(len(t.split()) for t in inputs)}))
        elif path == "/api/tags" and method == "GET":
            self.tags_requests += 1
            await self.listing.begin(scope)
            if self.listing.fail:
                await send_bytes(send, self.listing.fail, error_body(ERRORS.get(self.listing.fail, "error")))
                return
            await send_bytes(send, 200, orjson.dumps({"models": [_tag(m) for m in self.models]}))
        elif path == "/api/version" and method == "GET":
            await send_bytes(send, 200, b'{"version":"0.6.5"}')
        elif path == "/" and method in ("GET", "HEAD"):
            await send_bytes(send, 200, b"Ollama is running", b"text/plain; charset=utf-8")
        else:
            await send_bytes(send, 404, b"404 page not found", b"text/plain")

    async def _chat(self, raw: bytes, receive: Any, send: Any) -> None:
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            await send_bytes(send, 400, error_body("invalid character 'x' looking for beginning of value"))
            return
        self.requests.append(body)
        model = body.get("model")
        if not model:
            await send_bytes(send, 400, error_body("model is required"))
            return
        action = self._pop()
        if action is not None and action.kind == "delay":
            await asyncio.sleep(action.seconds)
            action = None
        if action is not None and action.kind == "fail":
            await self._fail(send, action, str(model))
            return
        if self._resolve(str(model)) is None:
            await send_bytes(send, 404, error_body(ERRORS[404].format(model=model)))
            return
        stream = body.get("stream", True) is not False  # Ollama streams unless told not to
        if action is not None and action.kind == "error_event" and not stream:
            await send_bytes(send, 500, error_body(STREAM_ERROR))
            return
        if action is not None and action.kind == "cut" and not stream:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json; charset=utf-8"),
                                    (b"content-length", b"512")]})
            return  # headers promising a body, then the connection drops
        words, reason = self._words(body)
        call = self._tool_call(body)
        if call is not None:
            words = []
        messages = body.get("messages") or []
        prompt = sum(len(str(m.get("content", "")).split()) + 4 for m in messages if isinstance(m, dict))
        final = {"model": model, "created_at": _now(), "message": {"role": "assistant", "content": ""},
                 "done": True, "done_reason": reason, "total_duration": 5_191_566_416, "load_duration": 2_154_458,
                 "prompt_eval_count": prompt, "prompt_eval_duration": 383_809_000, "eval_count": len(words),
                 "eval_duration": 4_799_921_000}
        if not stream:
            final["message"] = {"role": "assistant", "content": "".join(words)}
            if call is not None:
                final["message"]["tool_calls"] = [call]
            await send_bytes(send, 200, orjson.dumps(final))
            return
        if call is not None:  # Ollama streams a tool call whole, in one line before the done line
            line = {"model": model, "created_at": _now(), "message": {"role": "assistant", "content": "",
                                                                       "tool_calls": [call]}, "done": False}
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/x-ndjson")]})
            await send({"type": "http.response.body", "body": orjson.dumps(line) + b"\n" + orjson.dumps(final)
                        + b"\n"})
            return
        await self._stream(str(model), words, final, action, receive, send)

    def _tool_call(self, body: dict[str, Any]) -> dict[str, Any] | None:
        names = [t["function"]["name"] for t in body.get("tools") or []
                 if isinstance(t, dict) and isinstance(t.get("function"), dict)]
        messages = body.get("messages") or [{}]
        name = choose_tool(names, None, False, messages[-1].get("role") == "tool")
        return None if name is None else {"function": {"name": name, "arguments": self.tool_arguments}}

    def _words(self, body: dict[str, Any]) -> tuple[list[str], str]:
        messages = body.get("messages") or [{}]
        last = messages[-1] if isinstance(messages[-1], dict) else {}
        text = quote_result(last.get("content")) if last.get("role") == "tool" else self.reply_text
        parts = text.split(" ")
        words = [parts[0], *(" " + p for p in parts[1:])]
        options = body.get("options")
        limit = options.get("num_predict") if isinstance(options, dict) else None
        if isinstance(limit, int) and 0 <= limit < len(words):
            return words[:limit], "length"
        return words, "stop"

    async def _fail(self, send: Any, action: Action, model: str) -> None:
        headers = []
        if action.retry_after is not None:
            headers.append((b"retry-after", str(action.retry_after).encode()))
        text = action.message if action.message is not None else ERRORS.get(action.status, "error").format(
            model=model)
        await send_bytes(send, action.status, error_body(text), headers=headers)

    async def _stream(self, model: str, words: list[str], final: dict[str, Any], action: Action | None,
                      receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/x-ndjson")]})
        watcher = asyncio.ensure_future(receive())  # completes with http.disconnect if the client goes away
        try:
            cut_at = action.after if action is not None and action.kind in ("cut", "error_event") else None
            for i, word in enumerate(words):
                if cut_at is not None and i == cut_at:
                    break
                if i and self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
                if watcher.done():
                    self.disconnects += 1
                    return
                line = {"model": model, "created_at": _now(), "message": {"role": "assistant", "content": word},
                        "done": False}
                await send({"type": "http.response.body", "body": orjson.dumps(line) + b"\n", "more_body": True})
            if action is not None and action.kind == "cut":
                await asyncio.sleep(CUT_AFTER_S)  # a real cut comes after the bytes were read, not with them
                if action.clean:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                return  # returning mid-body makes the server drop the connection
            if action is not None and action.kind == "error_event":
                await send({"type": "http.response.body", "body": error_body(STREAM_ERROR) + b"\n"})
                return
            final["created_at"] = _now()
            await send({"type": "http.response.body", "body": orjson.dumps(final) + b"\n"})
        finally:
            watcher.cancel()


def _tag(name: str) -> dict[str, Any]:
    family = name.split(":")[0].rstrip("0123456789.") or name
    return {"name": name, "model": name, "modified_at": "2024-05-01T10:00:00.000000000Z", "size": 4_661_224_676,
            "digest": "365c0bd3c000a25d28ddbf732fe1c6add414de7275464c4e4d1c3b5fcb5d8ad1",
            "details": {"parent_model": "", "format": "gguf", "family": family, "families": [family],
                        "parameter_size": "8.0B", "quantization_level": "Q4_0"}}


@contextmanager
def running_fake_ollama() -> Iterator[FakeOllama]:
    """Serve a fresh FakeOllama on 127.0.0.1 for the duration of the block."""
    fake = FakeOllama()
    with serve_app(fake) as url:
        fake.base_url = url
        yield fake


__all__ = ["FakeOllama", "running_fake_ollama"]
