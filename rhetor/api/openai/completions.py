"""POST /v1/completions, OpenAI's legacy text-completion API, translated to a chat turn on any provider: the prompt
is one user message; the answer comes back as a `text_completion` (JSON, or SSE chunks ending with `data: [DONE]`).

Never silent: fields the translation cannot honour (suffix, logprobs, best_of > 1, n > 1, several prompts, token-id
prompts, anything unknown) are a 400 naming the field; `echo` puts the prompt in front of the text as OpenAI does.
Errors are OpenAI's (rhetor.api.compat.errors). Knows the gateway, never providers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rhetor.api.attribution import attribute
from rhetor.api.compat.common import (
    chat_input,
    new_id,
    read_body,
    resolve,
    rhetor_headers,
    session_headers,
    sse_response,
    unix_now,
)
from rhetor.api.compat.errors import attempts_status, compat_endpoint
from rhetor.api.compat.fidelity import openai_usage
from rhetor.api.openai.chat_stream import FINISH
from rhetor.api.openai.errors import OPENAI, openai_error
from rhetor.api.responses import json_response
from rhetor.api.state import gateway
from rhetor.errors import InvalidRequestError
from rhetor.gateway import StreamSession
from rhetor.types import Message, StreamEnd, StreamError, TextDelta


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class CompletionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown field is a 400 naming it, never dropped
    model: str
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: Annotated[int, Field(gt=0)] | None = 16
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = None
    user: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    echo: bool = False
    n: Annotated[int, Field(ge=1, le=1)] | None = None
    best_of: Annotated[int, Field(ge=1, le=1)] | None = None
    suffix: None = None
    logprobs: None = None


def prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if len(prompt) == 1 and isinstance(prompt[0], str):
        return str(prompt[0])
    if prompt and isinstance(prompt[0], (int, list)):
        raise InvalidRequestError("prompt as token ids is not supported: Rhetor translates completions to chat on any "
                                  "provider and has no tokenizer to decode them; send the text", param="prompt")
    raise InvalidRequestError("prompt: send one prompt per request (a list of several is not supported)",
                              param="prompt")


async def completions(request: Request) -> Response:
    body = await read_body(request, CompletionBody)
    route = resolve(request, body.model)
    prompt = prompt_text(body.prompt)
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    options = {"temperature": body.temperature, "top_p": body.top_p, "stop": stop, "max_tokens": body.max_tokens}
    inp = chat_input(request, route, [Message("user", prompt)], None, options, seed=body.seed, user=body.user)
    gw = gateway(request)
    attribute(inp, request, "openai")
    echo = prompt if body.echo else ""
    if body.stream:
        session = await gw.open_stream(inp)
        usage = body.stream_options is not None and body.stream_options.include_usage
        return sse_response(chunks(session, new_id("cmpl-"), echo, usage), session_headers(session))
    outcome = await gw.chat(inp)
    r = outcome.response
    return json_response({"id": new_id("cmpl-"), "object": "text_completion", "created": unix_now(),
                          "model": f"{r.provider}/{r.model}",
                          "choices": [{"text": echo + r.content, "index": 0, "logprobs": None,
                                       "finish_reason": FINISH[r.finish_reason]}],
                          "usage": openai_usage(r.usage)},
                         headers=rhetor_headers(r.provider, r.model, outcome.info, r.simulated))


async def chunks(session: StreamSession, completion_id: str, echo: str, include_usage: bool) -> AsyncIterator[bytes]:
    envelope = {"id": completion_id, "object": "text_completion", "created": unix_now(),
                "model": f"{session.provider}/{session.model}"}

    def frame(text: str, finish: str | None = None) -> bytes:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
        return b"data: " + orjson.dumps({**envelope, "choices": [choice]}) + b"\n\n"

    if echo:
        yield frame(echo)
    async for event in session.events():
        if isinstance(event, TextDelta):
            yield frame(event.text)
        elif isinstance(event, StreamEnd):
            yield frame("", FINISH[event.finish_reason])
            if include_usage:
                usage = {**envelope, "choices": [], "usage": openai_usage(event.usage)}
                yield b"data: " + orjson.dumps(usage) + b"\n\n"
            yield b"data: [DONE]\n\n"
        elif isinstance(event, StreamError):
            status = attempts_status(session.info.attempts_dicts()[-1:])
            yield b"data: " + orjson.dumps(openai_error(status, event.error, code=event.type)) + b"\n\n"
            return


routes: list[BaseRoute] = [Route("/v1/completions", compat_endpoint(OPENAI, completions), methods=["POST"])]

__all__ = ["CompletionBody", "completions", "routes"]
