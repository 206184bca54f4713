"""A wire-faithful fake of the OpenAI Chat Completions API, served as a real HTTP server on 127.0.0.1.

POST /v1/chat/completions answers real `chat.completion` objects, or with `"stream": true` real SSE
`chat.completion.chunk` events (role chunk first, one chunk per word, a finish chunk, the usage chunk when
`stream_options.include_usage` is true, then `data: [DONE]`). Errors use OpenAI's own body
`{"error": {"message", "type", "param", "code"}}`. GET /v1/models lists `models`. The official `openai` SDK
parses all of it. Scripted one-shot behaviours (fail_next, cut_next, error_event_next, delay_next) are
consumed in order, one per chat request. Knows nothing of Rhetor.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from tests.fakes.listing import ListingState, openai_list
from tests.fakes.script import CUT_AFTER_S, Action, Script, read_body, send_bytes
from tests.fakes.server import serve_app
from tests.fakes.tools import choose_tool, fake_vector, quote_result, split_json

ERRORS: dict[int, tuple[str, str, str | None]] = {  # status -> (message, type, code), as OpenAI sends them
    400: ("Invalid value for 'messages'.", "invalid_request_error", None),
    401: ("Incorrect API key provided: te***ey. You can find your API key at "
          "https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key"),
    403: ("Project does not have access to model.", "invalid_request_error", "model_not_found"),
    404: ("The model `{model}` does not exist or you do not have access to it.", "invalid_request_error",
          "model_not_found"),
    429: ("Rate limit reached for {model} on requests per min (RPM): Limit 3, Used 3, Requested 1. "
          "Please try again in 20s.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    503: ("The engine is currently overloaded, please try again later", "server_error", None),
}
NO_KEY = ("You didn't provide an API key. You need to provide your API key in an Authorization header using "
          "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) "
          "if you're accessing the API from your browser and are prompted for a username and password. You can "
          "obtain an API key from https://platform.openai.com/account/api-keys.")


def error_body(message: str, etype: str, code: str | None = None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": etype, "param": param, "code": code}})


class FakeOpenAI(Script):
    """The fake's state and ASGI app. Tests set `reply_text`, `chunk_delay`, `omit_done`, `api_key` and read
    `requests` (JSON bodies), `raw_requests` (the bodies' bytes exactly as received), `headers` (request headers)
    and `disconnects` (streams the client abandoned). `reply_extra` / `message_extra` / `choice_extra` /
    `usage_extra` are merged into every answer (fields a relay must keep: service_tier, logprobs, cached tokens)."""

    def __init__(self) -> None:
        super().__init__()
        self.base_url = ""  # http://127.0.0.1:PORT/v1, set when served
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.reply_text = "Hello from fake OpenAI"
        self.chunk_delay = 0.0  # seconds between streamed chunks
        self.omit_done = False  # behave like compatible servers that end without `data: [DONE]`
        self.api_key: str | None = None  # if set, only this bearer token is accepted; else any
        self.models = ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-3.5-turbo"]
        self.listing = ListingState()  # GET /v1/models: requests counted, failures and delays (tests.fakes.listing)
        self.disconnects = 0
        self.tool_arguments = '{"city": "Paris"}'  # what a tool call's arguments are, when tools are offered
        self.embedding_requests: list[dict[str, Any]] = []
        self.raw_requests: list[bytes] = []
        self.reply_extra: dict[str, Any] = {}
        self.message_extra: dict[str, Any] = {}
        self.choice_extra: dict[str, Any] = {}
        self.usage_extra: dict[str, Any] = {}
        # An OpenAI-compatible service's quirks (rhetor/providers/presets.py), reproduced: None = OpenAI itself
        self.quirk: str | None = None
        self.key_status: dict[str, tuple[int, float | None]] = {}  # bearer key -> (status, Retry-After) always
        self.latency = 0.0  # seconds before every chat answer (a slow deployment)
        self.by_key: dict[str, int] = {}  # chat requests answered per bearer key

    # ------------------------------------------------------------ the ASGI app (scripting: tests.fakes.script)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        method, path = scope["method"], scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if path == "/v1/chat/completions" and method == "POST":
            await self._chat(body, headers, receive, send)
        elif path == "/v1/embeddings" and method == "POST":
            await self._embeddings(body, headers, send)
        elif path == "/v1/models" and method == "GET" and self.quirk == "perplexity":
            await send_bytes(send, 404, error_body("Not Found", "invalid_request_error"))  # Perplexity lists none
        elif path == "/v1/models" and method == "GET":
            await self.listing.begin(scope)
            if self.listing.fail:
                await self._fail(send, Action("fail", status=self.listing.fail), "")
            elif await self._auth(headers, send):
                await send_bytes(send, 200, orjson.dumps(openai_list(self.models)))
        else:
            await send_bytes(send, 404, error_body(f"Invalid URL ({method} {path})", "invalid_request_error"))

    async def _auth(self, headers: dict[str, str], send: Any) -> bool:
        auth = headers.get("authorization", "")
        if self.quirk in ("vllm", "llama.cpp", "lm-studio"):
            return True  # local servers take any key, or none
        if auth[7:] in self.key_status:
            status, retry = self.key_status[auth[7:]]
            await self._fail(send, Action("fail", status=status, retry_after=retry), "")
            return False
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            await send_bytes(send, 401, error_body(NO_KEY, "invalid_request_error"))
            return False
        if self.api_key is not None and auth[7:] != self.api_key:
            await send_bytes(send, 401, error_body(ERRORS[401][0], "invalid_request_error", "invalid_api_key"))
            return False
        return True

    async def _chat(self, raw: bytes, headers: dict[str, str], receive: Any, send: Any) -> None:
        self.headers.append(headers)
        self.raw_requests.append(raw)
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            msg = ("We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                   "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was "
                   "not valid JSON.")
            await send_bytes(send, 400, error_body(msg, "invalid_request_error"))
            return
        self.requests.append(body)
        if not await self._auth(headers, send):
            return
        if self.quirk == "mistral" and ("stream_options" in body or "seed" in body):
            bad = "stream_options" if "stream_options" in body else "seed"
            await send_bytes(send, 422, orjson.dumps({"object": "error", "message": {"detail": [
                {"type": "extra_forbidden", "loc": ["body", bad], "msg": "Extra inputs are not permitted"}]},
                "type": "invalid_request_message_error", "param": None, "code": None}))
            return
        key = headers.get("authorization", "")[7:]
        self.by_key[key] = self.by_key.get(key, 0) + 1
        if self.latency:
            await asyncio.sleep(self.latency)
        if not body.get("model"):
            await send_bytes(send, 400, error_body("you must provide a model parameter", "invalid_request_error"))
            return
        if not isinstance(body.get("messages"), list):
            await send_bytes(send, 400, error_body("Missing required parameter: 'messages'.",
                                                   "invalid_request_error", "missing_required_parameter",
                                                   "messages"))
            return
        action = self._pop()
        if action is not None and action.kind == "delay":
            await asyncio.sleep(action.seconds)
            action = None
        model = str(body["model"])
        if action is not None and action.kind == "fail":
            await self._fail(send, action, model)
            return
        stream = bool(body.get("stream"))
        if action is not None and action.kind == "error_event" and not stream:
            await self._fail(send, Action("fail", status=500), model)
            return
        if action is not None and action.kind == "cut" and not stream:
            # headers promising a body, then the connection drops
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"512")]})
            return
        words, finish = self._words(body)
        call = self._tool_call(body)
        usage = {**_usage(body, len(words)), **self.usage_extra}
        if self.quirk == "deepseek":  # cached prompt tokens under DeepSeek's own names
            usage.pop("prompt_tokens_details", None)
            usage.update(prompt_cache_hit_tokens=3, prompt_cache_miss_tokens=usage["prompt_tokens"] - 3)
        if stream:
            await self._stream(body, words, finish, usage, action, receive, send, call)
            return
        message: dict[str, Any] = {"role": "assistant", "content": "".join(words), "refusal": None,
                                   "annotations": [], **self.message_extra}
        if call is not None:
            message.update(content=None, tool_calls=[call])
            finish = "tool_calls"
        n = body.get("n") if isinstance(body.get("n"), int) else 1
        completion = {
            **_envelope("chat.completion", model),
            "choices": [{"index": i, "message": message, "logprobs": None, "finish_reason": finish,
                         **self.choice_extra} for i in range(n)],
            "usage": usage,
            **self.reply_extra,
        }
        await send_bytes(send, 200, orjson.dumps(completion))

    def _tool_call(self, body: dict[str, Any]) -> dict[str, Any] | None:
        tools = body.get("tools") or []
        names = [t["function"]["name"] for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)]
        choice = body.get("tool_choice")
        forced = choice["function"]["name"] if isinstance(choice, dict) else None
        messages = body.get("messages") or [{}]
        name = choose_tool(names, forced, choice == "none", messages[-1].get("role") == "tool")
        if name is None:
            return None
        return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                "function": {"name": name, "arguments": self.tool_arguments}}

    async def _embeddings(self, raw: bytes, headers: dict[str, str], send: Any) -> None:
        body = orjson.loads(raw)
        self.embedding_requests.append(body)
        if not await self._auth(headers, send):
            return
        action = self._pop()
        if action is not None and action.kind == "fail":
            await self._fail(send, action, str(body.get("model")))
            return
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if inputs and isinstance(inputs[0], int):  # one token array
            inputs = [inputs]
        data = [{"object": "embedding", "index": i,
                 "embedding": fake_vector(t if isinstance(t, str) else orjson.dumps(t).decode())}
                for i, t in enumerate(inputs)]
        tokens = sum(len(str(t).split()) for t in inputs)
        await send_bytes(send, 200, orjson.dumps({"object": "list", "data": data, "model": body["model"],
                                                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))

    def _words(self, body: dict[str, Any]) -> tuple[list[str], str]:
        messages = body.get("messages") or [{}]
        last = messages[-1] if isinstance(messages[-1], dict) else {}
        text = quote_result(last.get("content")) if last.get("role") == "tool" else self.reply_text
        parts = text.split(" ")
        words = [parts[0], *(" " + p for p in parts[1:])]
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if isinstance(limit, int) and limit < len(words):
            return words[:limit], "length"
        return words, "stop"

    async def _fail(self, send: Any, action: Action, model: str) -> None:
        message, etype, code = ERRORS.get(action.status, ("Upstream error", "server_error", None))
        if action.status not in ERRORS and action.status < 500:
            etype = "invalid_request_error"
        headers = [(b"x-request-id", f"req_{uuid.uuid4().hex}".encode())]
        if action.retry_after is not None:
            headers.append((b"retry-after", str(action.retry_after).encode()))
        text = action.message if action.message is not None else message.format(model=model)
        await send_bytes(send, action.status, error_body(text, etype, code), headers=headers)

    async def _stream(self, body: dict[str, Any], words: list[str], finish: str, usage: dict[str, Any],
                      action: Action | None, receive: Any, send: Any, call: dict[str, Any] | None = None) -> None:
        model = str(body["model"])
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        quirk = self.quirk
        if quirk in ("groq", "mistral", "together", "fireworks"):
            include_usage = False  # usage comes on the last chunk instead (groq: inside x_groq)
        envelope = {**_envelope("chat.completion.chunk", model), "service_tier": "default", **self.reply_extra}

        def chunk(delta: dict[str, Any], reason: str | None = None, index: int = 0) -> bytes:
            data: dict[str, Any] = {**envelope, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                                             "finish_reason": reason}]}
            if include_usage:
                data["usage"] = None
            return b"data: " + orjson.dumps(data) + b"\n\n"

        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8"),
                                (b"cache-control", b"no-cache"), (b"connection", b"keep-alive")]})
        watcher = asyncio.ensure_future(receive())  # completes with http.disconnect if the client goes away
        try:
            events = [chunk({"role": "assistant", "content": "", "refusal": None})]
            if quirk == "openrouter":  # keep-alive comments before the first chunk
                events.insert(0, b": OPENROUTER PROCESSING\n\n")
            if call is None:
                events += [chunk({"content": w}) for w in words]
            else:
                fn = call["function"]
                events.append(chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                                     "function": {"name": fn["name"], "arguments": ""}}]}))
                events += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                           for piece in split_json(fn["arguments"])]
                finish = "tool_calls"
            n: int = body["n"] if isinstance(body.get("n"), int) else 1
            for i in range(1, n):  # further choices (n > 1) follow the first one's deltas, each with its index
                events += [chunk({"role": "assistant", "content": ""}, index=i), *(chunk({"content": w}, index=i)
                                                                                   for w in words)]
            cut_at = action.after + 1 if action is not None and action.kind in ("cut", "error_event") else None
            for i, event in enumerate(events):
                if cut_at is not None and i == cut_at:
                    break
                if i and self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
                if watcher.done():
                    self.disconnects += 1
                    return
                await send({"type": "http.response.body", "body": event, "more_body": True})
            if action is not None and action.kind == "cut":
                await asyncio.sleep(CUT_AFTER_S)  # a real cut comes after the bytes were read, not with them
                if action.clean:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                return  # returning mid-body makes the server drop the connection
            if action is not None and action.kind == "error_event":
                err = error_body(ERRORS[500][0], "server_error")
                await send({"type": "http.response.body", "body": b"data: " + err + b"\n\n"})
                return
            tail = chunk({}, finish) + b"".join(chunk({}, finish, i) for i in range(1, n))
            if quirk in ("groq", "mistral", "together", "fireworks"):
                last = orjson.loads(tail[6:])
                if quirk == "groq":
                    last["x_groq"] = {"id": "req_fake", "usage": usage}
                else:
                    last["usage"] = usage
                tail = b"data: " + orjson.dumps(last) + b"\n\n"
            if include_usage:
                usage_chunk = {**envelope, "choices": [], "usage": usage}
                tail += b"data: " + orjson.dumps(usage_chunk) + b"\n\n"
            if not self.omit_done and quirk != "llama.cpp":
                tail += b"data: [DONE]\n\n"
            await send({"type": "http.response.body", "body": tail})
        finally:
            watcher.cancel()


def _envelope(obj: str, model: str) -> dict[str, Any]:
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": obj, "created": int(time.time()), "model": model,
            "system_fingerprint": "fp_fake0001"}


def _usage(body: dict[str, Any], completion_tokens: int) -> dict[str, Any]:
    messages = body.get("messages") or []
    prompt = sum(len(str(m.get("content", "")).split()) + 4 for m in messages if isinstance(m, dict))
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


@contextmanager
def running_fake_openai() -> Iterator[FakeOpenAI]:
    """Serve a fresh FakeOpenAI on 127.0.0.1 for the duration of the block."""
    fake = FakeOpenAI()
    with serve_app(fake) as url:
        fake.base_url = url + "/v1"
        yield fake


__all__ = ["FakeOpenAI", "running_fake_openai"]
