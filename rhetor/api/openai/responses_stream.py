"""SSE framing of a committed stream as Responses API events (`event: <type>` + `data: {...}`, numbered by
`sequence_number`), in OpenAI's order:

response.created, response.in_progress; per text item: response.output_item.added, response.content_part.added,
response.output_text.delta..., response.output_text.done, response.content_part.done,
response.output_item.done; per function call: response.output_item.added,
response.function_call_arguments.delta..., response.function_call_arguments.done, response.output_item.done;
then response.completed (response.incomplete when the answer hit max_output_tokens). A failure after commit
is response.failed carrying the error, and the end of the stream.

`finish(response, output, status)` is awaited before the last event goes out, so a client that continues the
conversation with `previous_response_id` right after `response.completed` finds it stored. Knows the gateway's
stream types, never providers, the store or HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from rhetor.api.openai.objects import ResponseShell
from rhetor.api.openai.wire import Item, new_item_id
from rhetor.gateway import StreamSession
from rhetor.types import StreamEnd, StreamError, TextDelta, ToolCallDelta

Finish = Callable[[dict[str, Any] | None, list[Item], str], Awaitable[None]]
log = logging.getLogger("rhetor.api")


class _Framer:
    """Numbers events and tracks the open output items."""

    def __init__(self) -> None:
        self.seq = 0
        self.output: list[Item] = []
        self.text: Item | None = None  # the open assistant message item, if any
        self.parts: list[str] = []  # its text so far
        self.calls: dict[int, Item] = {}  # open function_call items by the stream's call index

    def frame(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def index(self, item: Item) -> int:
        return next(i for i, it in enumerate(self.output) if it is item)

    def open_text(self) -> list[bytes]:
        item: Item = {"id": new_item_id("msg"), "type": "message", "role": "assistant", "status": "in_progress",
                      "content": []}
        self.output.append(item)
        self.text, self.parts = item, []
        n = len(self.output) - 1
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return [self.frame("response.output_item.added", output_index=n, item=dict(item, content=[])),
                self.frame("response.content_part.added", item_id=item["id"], output_index=n, content_index=0,
                           part=part)]

    def text_delta(self, text: str) -> list[bytes]:
        frames = self.open_text() if self.text is None else []
        item = self.text
        assert item is not None
        self.parts.append(text)
        frames.append(self.frame("response.output_text.delta", item_id=item["id"], output_index=self.index(item),
                                 content_index=0, delta=text, logprobs=[]))
        return frames

    def close_text(self) -> list[bytes]:
        item, self.text = self.text, None
        if item is None:
            return []
        n, text = self.index(item), "".join(self.parts)
        self.parts = []
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        item.update(status="completed", content=[part])
        return [self.frame("response.output_text.done", item_id=item["id"], output_index=n, content_index=0,
                           text=text, logprobs=[]),
                self.frame("response.content_part.done", item_id=item["id"], output_index=n, content_index=0,
                           part=part),
                self.frame("response.output_item.done", output_index=n, item=item)]

    def call_delta(self, event: ToolCallDelta) -> list[bytes]:
        frames = self.close_text()
        item = self.calls.get(event.index)
        if item is None:
            item = {"id": new_item_id("fc"), "type": "function_call", "status": "in_progress",
                    "call_id": event.id or f"call_{event.index}", "name": event.name or "", "arguments": ""}
            self.output.append(item)
            self.calls[event.index] = item
            frames.append(self.frame("response.output_item.added", output_index=len(self.output) - 1,
                                     item=dict(item)))
        if event.arguments:
            item["arguments"] += event.arguments
            frames.append(self.frame("response.function_call_arguments.delta", item_id=item["id"],
                                     output_index=self.index(item), delta=event.arguments))
        return frames

    def close_all(self) -> list[bytes]:
        frames = self.close_text()
        for item in self.calls.values():
            n = self.index(item)
            item["status"] = "completed"
            frames.append(self.frame("response.function_call_arguments.done", item_id=item["id"], output_index=n,
                                     name=item["name"], arguments=item["arguments"]))
            frames.append(self.frame("response.output_item.done", output_index=n, item=item))
        self.calls = {}
        return frames


async def _store(finish: Finish, response: dict[str, Any] | None, output: list[Item], status: str) -> None:
    # The answer is already on the wire: a store failure must not cut it; it is logged (and GET will 404).
    try:
        await finish(response, output, status)
    except Exception:
        log.exception("could not store response %s", response["id"] if response else "(cancelled)")


def _error_code(kind: str) -> str:
    return "rate_limit_exceeded" if "rate" in kind else "server_error"


async def response_events(session: StreamSession, shell: ResponseShell, finish: Finish) -> AsyncIterator[bytes]:
    f = _Framer()
    model = f"{session.provider}/{session.model}"
    done = False
    yield f.frame("response.created", response=shell.build("in_progress", [], model=model))
    yield f.frame("response.in_progress", response=shell.build("in_progress", [], model=model))
    try:
        async for event in session.events():
            if isinstance(event, TextDelta):
                for frame in f.text_delta(event.text):
                    yield frame
            elif isinstance(event, ToolCallDelta):
                for frame in f.call_delta(event):
                    yield frame
            elif isinstance(event, StreamEnd):
                if not f.output:
                    for frame in f.open_text():
                        yield frame
                for frame in f.close_all():
                    yield frame
                response = shell.build("completed", f.output, event.usage, model=model, finish=event.finish_reason)
                done = True
                await _store(finish, response, f.output, "complete")
                kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
                yield f.frame(kind, response=response)
            elif isinstance(event, StreamError):
                error = {"code": _error_code(event.type), "message": event.error}
                response = shell.build("failed", f.output, model=model, error=error)
                done = True
                await _store(finish, response, f.output, "error")
                yield f.frame("response.failed", response=response)
                return
    finally:
        if not done:  # the client went away (or shutdown ended us): keep what was said, marked cancelled
            f.close_all()
            await _store(finish, None, f.output, "cancelled")


__all__ = ["Finish", "response_events"]
