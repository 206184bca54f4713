"""A wire-faithful fake of the Google Gemini API (v1 and v1beta), served as a real HTTP server on 127.0.0.1.

POST /v1/models/{model}:generateContent answers GenerateContentResponse objects (candidates with content
parts, finishReason, usageMetadata, modelVersion, responseId); :streamGenerateContent?alt=sse streams the same
objects as SSE `data:` events separated by CRLF CRLF, one per word, the last carrying finishReason and the full
usage — there is no terminator event, as on the real API; :countTokens answers {"totalTokens"}. GET
/v1/models lists `models`. The key comes in `x-goog-api-key` (or `?key=`); errors use google.rpc's body
{"error": {"code", "message", "status"}}. Offered functionDeclarations, it calls one (functionCall part);
after a functionResponse it answers in text quoting the result. `block_prompt` answers promptFeedback with
blockReason SAFETY and no candidates; `finish_reason` overrides STOP. The official google-genai SDK parses
all of it (tests/test_provider_gemini.py). Knows nothing of Rhetor.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson

from tests.fakes.listing import ListingState, gemini_page
from tests.fakes.script import CUT_AFTER_S, Action, Script, read_body, send_bytes
from tests.fakes.server import serve_app
from tests.fakes.tools import choose_tool, quote_result

STATUS: dict[int, tuple[str, str]] = {  # HTTP status -> (google.rpc status, message) as Gemini sends them
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    403: ("PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without established identity)."
          " Please use API Key or other form of API consumer identity to call this API."),
    404: ("NOT_FOUND", "models/{model} is not found for API version v1, or is not supported for "
          "generateContent."),
    429: ("RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report in "
          "https://developers.generativeai.google/guide/troubleshooting"),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
}


def error_body(code: int, message: str | None = None, model: str = "") -> bytes:
    status, default = STATUS.get(code, ("UNKNOWN", "error"))
    return orjson.dumps({"error": {"code": code, "message": (message or default).format(model=model),
                                   "status": status}})


def _texts(parts: Any) -> list[str]:
    return [str(p["text"]) for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)] \
        if isinstance(parts, list) else []


def count_tokens(body: dict[str, Any]) -> int:
    """Words in every text part of contents and systemInstruction: the fake's tokenizer."""
    inner = body.get("generateContentRequest") if isinstance(body.get("generateContentRequest"), dict) else body
    texts = [t for c in inner.get("contents") or [] if isinstance(c, dict) for t in _texts(c.get("parts"))]
    system = inner.get("systemInstruction") or inner.get("system_instruction")
    if isinstance(system, dict):
        texts += _texts(system.get("parts"))
    return sum(len(t.split()) for t in texts)


class FakeGemini(Script):
    """Tests set `reply_text`, `chunk_delay`, `api_key`, `block_prompt`, `finish_reason`, `thoughts_tokens` and
    read `requests` (bodies), `paths`, `headers` and `disconnects`."""

    def __init__(self) -> None:
        super().__init__()
        self.base_url = ""
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.reply_text = "Hello from fake Gemini"
        self.chunk_delay = 0.0
        self.api_key: str | None = None
        self.block_prompt = False
        self.finish_reason = "STOP"
        self.thoughts_tokens = 0
        self.tool_args: dict[str, Any] = {"city": "Paris"}
        self.models = ["gemini-3.8-flash", "gemini-2.5-pro", "gemini-2.5-flash"]
        self.listing = ListingState()  # GET /v1[beta]/models, paged: counted, failures, delays (tests.fakes.listing)
        self.disconnects = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = await read_body(receive)
        method, path = scope["method"], unquote(scope["path"])
        query = parse_qs(scope.get("query_string", b"").decode())
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key = headers.get("x-goog-api-key") or (query.get("key") or [""])[0]
        if not key:
            await send_bytes(send, 403, error_body(403))
            return
        if self.api_key is not None and key != self.api_key:
            await send_bytes(send, 400, error_body(400, "API key not valid. Please pass a valid API key."))
            return
        version, _, rest = path.lstrip("/").partition("/")
        if version not in ("v1", "v1beta"):
            await send_bytes(send, 404, error_body(404, f"Invalid path {path}"))
            return
        if method == "GET" and rest == "models":
            await self.listing.begin(scope)
            if self.listing.fail:
                await send_bytes(send, self.listing.fail, error_body(self.listing.fail))
                return
            await send_bytes(send, 200, orjson.dumps(gemini_page(self.models, query, self.listing.page_cap)))
            return
        model, _, verb = rest.removeprefix("models/").partition(":")
        if method != "POST" or not rest.startswith("models/") or verb not in (
                "generateContent", "streamGenerateContent", "countTokens"):
            await send_bytes(send, 404, error_body(404, f"Invalid path {path}"))
            return
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            await send_bytes(send, 400, error_body(400, "Invalid JSON payload received."))
            return
        self.requests.append(body)
        self.paths.append(path + ("?" + scope["query_string"].decode() if scope.get("query_string") else ""))
        self.headers.append(headers)
        if verb == "countTokens":
            await send_bytes(send, 200, orjson.dumps({"totalTokens": count_tokens(body)}))
            return
        await self._generate(model, body, verb == "streamGenerateContent", query, receive, send)

    def _call(self, body: dict[str, Any]) -> dict[str, Any] | None:
        names = [d["name"] for t in body.get("tools") or [] if isinstance(t, dict)
                 for d in t.get("functionDeclarations") or t.get("function_declarations") or []]
        cfg = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        allowed = cfg.get("allowedFunctionNames") or []
        last = (body.get("contents") or [{}])[-1]
        answered = any("functionResponse" in p for p in last.get("parts") or [] if isinstance(p, dict))
        name = choose_tool(names, allowed[0] if allowed else None, cfg.get("mode") == "NONE", answered)
        return None if name is None else {"id": f"fc_{uuid.uuid4().hex[:12]}", "name": name, "args": self.tool_args}

    def _words(self, body: dict[str, Any]) -> tuple[list[str], str]:
        last = (body.get("contents") or [{}])[-1]
        responses = [p["functionResponse"] for p in last.get("parts") or [] if isinstance(p, dict)
                     and isinstance(p.get("functionResponse"), dict)]
        text = quote_result(orjson.dumps(responses[0].get("response")).decode()) if responses else self.reply_text
        parts = text.split(" ")
        words = [parts[0], *(" " + p for p in parts[1:])]
        limit = (body.get("generationConfig") or {}).get("maxOutputTokens")
        if isinstance(limit, int) and limit < len(words):
            return words[:limit], "MAX_TOKENS"
        return words, self.finish_reason

    async def _generate(self, model: str, body: dict[str, Any], stream: bool, query: dict[str, list[str]],
                        receive: Any, send: Any) -> None:
        action = self._pop()
        if action is not None and action.kind == "delay":
            await asyncio.sleep(action.seconds)
            action = None
        if action is not None and action.kind in ("fail", "error_event") and not (stream and action.kind ==
                                                                                   "error_event"):
            extra = [(b"retry-after", str(action.retry_after).encode())] if action.retry_after is not None else []
            status = action.status or 500
            await send_bytes(send, status, error_body(status, action.message, model), headers=extra)
            return
        prompt = count_tokens(body)
        envelope = {"modelVersion": model, "responseId": uuid.uuid4().hex[:22]}
        if self.block_prompt:
            blocked = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]},
                "usageMetadata": {"promptTokenCount": prompt, "totalTokenCount": prompt}, **envelope}
            if stream:
                await self._sse(send, receive, [blocked], None)
            else:
                await send_bytes(send, 200, orjson.dumps(blocked))
            return
        words, finish = self._words(body)
        call = self._call(body)
        out = (1 if call else len(words)) + self.thoughts_tokens
        usage = {"promptTokenCount": prompt, "candidatesTokenCount": out - self.thoughts_tokens,
                 "totalTokenCount": prompt + out,
                 "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]}
        if self.thoughts_tokens:
            usage["thoughtsTokenCount"] = self.thoughts_tokens
        safety = [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]

        def candidate(parts: list[dict[str, Any]], reason: str | None) -> dict[str, Any]:
            c: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
            if reason is not None:
                c.update(finishReason=reason, safetyRatings=safety)
            return c

        if not stream:
            parts = [{"functionCall": call}] if call else [{"text": "".join(words)}]
            await send_bytes(send, 200, orjson.dumps({"candidates": [candidate(parts, finish)],
                                                      "usageMetadata": usage, **envelope}))
            return
        if query.get("alt") != ["sse"]:  # without alt=sse the real API streams one JSON array
            chunks = [{"candidates": [candidate([{"text": "".join(words)}], finish)], "usageMetadata": usage,
                       **envelope}]
            await send_bytes(send, 200, orjson.dumps(chunks))
            return
        running = {"promptTokenCount": prompt, "totalTokenCount": prompt}
        if call:
            events = [{"candidates": [candidate([{"functionCall": call}], finish)], "usageMetadata": usage,
                       **envelope}]
        else:
            events = [{"candidates": [candidate([{"text": w}], None)], "usageMetadata": running, **envelope}
                      for w in words[:-1]]
            events.append({"candidates": [candidate([{"text": words[-1]}], finish)], "usageMetadata": usage,
                           **envelope})
        await self._sse(send, receive, events, action)

    async def _sse(self, send: Any, receive: Any, events: list[dict[str, Any]], action: Action | None) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"x-content-type-options", b"nosniff")]})
        watcher = asyncio.ensure_future(receive())
        cut_at = action.after if action is not None and action.kind in ("cut", "error_event") else None
        try:
            for i, event in enumerate(events):
                if cut_at is not None and i == cut_at:
                    break
                if i and self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
                if watcher.done():
                    self.disconnects += 1
                    return
                await send({"type": "http.response.body", "body": b"data: " + orjson.dumps(event) + b"\r\n\r\n",
                            "more_body": True})
            if action is not None and action.kind == "cut":
                await asyncio.sleep(CUT_AFTER_S)
                if action.clean:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if action is not None and action.kind == "error_event":
                await send({"type": "http.response.body", "body": b"data: " + error_body(500) + b"\r\n\r\n"})
                return
            await send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()


@contextmanager
def running_fake_gemini() -> Iterator[FakeGemini]:
    """Serve a fresh FakeGemini on 127.0.0.1; its `base_url` is what GEMINI_BASE_URL would be."""
    fake = FakeGemini()
    with serve_app(fake) as url:
        fake.base_url = url
        yield fake


__all__ = ["FakeGemini", "count_tokens", "error_body", "running_fake_gemini"]
