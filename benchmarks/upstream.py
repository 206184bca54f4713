"""A zero-delay fake OpenAI-compatible upstream for benchmarks: a raw asyncio HTTP/1.1 keep-alive server that
answers POST /v1/chat/completions (JSON, or SSE when the body asks for `"stream": true`) with a canned reply,
and POST /v1/messages the same way in the Anthropic Messages format (for the translation benchmarks).

It is deliberately framework-free so it is never the bottleneck. Run: `python benchmarks/upstream.py PORT`.
"""

from __future__ import annotations

import asyncio
import sys

import orjson

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
    uvloop = None  # type: ignore[assignment]

REPLY = orjson.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the benchmark upstream."},
                 "finish_reason": "stop", "logprobs": None}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
})


def _chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
    return b"data: " + orjson.dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0,
                                     "model": "bench", "choices": [{"index": 0, "delta": delta,
                                                                    "finish_reason": finish}]}) + b"\n\n"


STREAM = (_chunk({"role": "assistant", "content": ""}) + b"".join(_chunk({"content": w}) for w in
          ("Hello", " from", " the", " benchmark", " upstream.")) + _chunk({}, "stop") + b"data: " +
          orjson.dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": "bench",
                        "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7,
                                                 "total_tokens": 12}}) + b"\n\ndata: [DONE]\n\n")


def _event(name: str, data: dict[str, object]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


ANTHROPIC_REPLY = orjson.dumps({
    "id": "msg_bench", "type": "message", "role": "assistant", "model": "bench",
    "content": [{"type": "text", "text": "Hello from the benchmark upstream."}], "stop_reason": "end_turn",
    "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 7},
})
ANTHROPIC_STREAM = (
    _event("message_start", {"type": "message_start", "message": {
        "id": "msg_bench", "type": "message", "role": "assistant", "model": "bench", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 1}}})
    + _event("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}})
    + b"".join(_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                              "delta": {"type": "text_delta", "text": w}})
               for w in ("Hello", " from", " the", " benchmark", " upstream."))
    + _event("content_block_stop", {"type": "content_block_stop", "index": 0})
    + _event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                               "usage": {"output_tokens": 7}})
    + _event("message_stop", {"type": "message_stop"}))


def _response(body: bytes, content_type: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-type: " + content_type + b"\r\ncontent-length: " +
            str(len(body)).encode() + b"\r\n\r\n" + body)


JSON_RESPONSE = _response(REPLY, b"application/json")
SSE_RESPONSE = _response(STREAM, b"text/event-stream")
ANTHROPIC_JSON_RESPONSE = _response(ANTHROPIC_REPLY, b"application/json")
ANTHROPIC_SSE_RESPONSE = _response(ANTHROPIC_STREAM, b"text/event-stream")


class Upstream(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buf[:head_end].lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                length = int(head[at + 15:head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None])
            end = head_end + 4 + length
            if len(self.buf) < end:
                return
            body, self.buf = self.buf[head_end + 4:end], self.buf[end:]
            streaming = b'"stream":true' in body.replace(b" ", b"")
            if head.startswith(b"post /v1/messages"):
                self.transport.write(ANTHROPIC_SSE_RESPONSE if streaming else ANTHROPIC_JSON_RESPONSE)
            else:
                self.transport.write(SSE_RESPONSE if streaming else JSON_RESPONSE)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if uvloop is not None:
        uvloop.install()
    asyncio.run(serve(int(sys.argv[1])))
