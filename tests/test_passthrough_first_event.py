"""A same-vendor pass-through stream sends its first event alone, before the rest of the upstream's read is parsed
(the caller's first byte does not wait for the whole read), and relays every byte it was sent (OpenAI's usage
chunk it asked for on its own account aside): an answer arriving in one network read, from a raw 127.0.0.1 server."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from rhetor.providers import anthropic_passthrough, openai_passthrough
from rhetor.providers.http import HttpUpstream
from rhetor.types import ChatRequest, Message, Passthrough, RawFrame, StreamEnd, TextDelta
from tests.fakes.raw_http import raw_server

ANTHROPIC = [
    (b"message_start", {"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant",
                                                             "model": "claude", "content": [],
                                                             "usage": {"input_tokens": 3, "output_tokens": 1}}}),
    (b"content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text",
                                                                                          "text": ""}}),
    (b"content_block_delta", {"type": "content_block_delta", "index": 0,
                              "delta": {"type": "text_delta", "text": "Hel"}}),
    (b"content_block_delta", {"type": "content_block_delta", "index": 0,
                              "delta": {"type": "text_delta", "text": "lo"}}),
    (b"content_block_stop", {"type": "content_block_stop", "index": 0}),
    (b"message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                        "usage": {"output_tokens": 2}}),
    (b"message_stop", {"type": "message_stop"}),
]
AN_EVENTS = [b"event: " + name + b"\ndata: " + orjson.dumps(data) + b"\n\n" for name, data in ANTHROPIC]


def oa_chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return b"data: " + orjson.dumps({"id": "c", "object": "chat.completion.chunk", "model": "gpt",
                                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"


OA_EVENTS = [oa_chunk({"role": "assistant", "content": ""}), oa_chunk({"content": "Hel"}),
             oa_chunk({"content": "lo"}), oa_chunk({}, "stop"), b"data: [DONE]\n\n"]


def sse_answer(events: list[bytes]) -> bytes:
    body = b"".join(events)
    return b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


async def relayed(api: str) -> tuple[list[Any], list[Any]]:
    events = AN_EVENTS if api == "anthropic" else OA_EVENTS

    async def script(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(sse_answer(events))  # the whole answer in one write

    async with raw_server(script) as server:
        http = HttpUpstream(api, server.url + ("" if api == "anthropic" else "/v1"), {}, timeout_s=5,
                            connect_timeout_s=5)
        body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        request = ChatRequest("m", [Message("user", "hi", raw_index=0)])
        pt = Passthrough(api, body)  # type: ignore[arg-type]
        module: Any = anthropic_passthrough if api == "anthropic" else openai_passthrough
        try:
            out = [event async for event in module.stream(http, request, pt)]
        finally:
            await http.aclose()
    return out, events


async def test_the_first_event_goes_out_alone_and_every_byte_is_relayed() -> None:
    for api in ("anthropic", "openai"):
        out, events = await relayed(api)
        frames = [e.data for e in out if isinstance(e, RawFrame)]
        assert isinstance(out[0], RawFrame) and out[0].data == events[0], api  # alone, first
        assert b"".join(frames) == b"".join(events), api
        assert "".join(e.text for e in out if isinstance(e, TextDelta)) == "Hello", api
        assert isinstance(out[-1], StreamEnd) and out[-1].finish_reason == "stop", api
