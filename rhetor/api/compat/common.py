"""What the OpenAI- and Anthropic-compatible fronts share: reading and validating a body, the Rhetor headers
(`x-rhetor-task`, `x-rhetor-context-id`, `x-rhetor-component` in; provider/model/fallback/simulated out), the
model-name resolution call, the context rule for standard clients, SSE responses and ids.

Context rule: without `x-rhetor-context-id` a request is stateless. With it, a request whose conversation is
a single user message continues the stored conversation (stored history + that message, like the native
`message` form); a longer conversation *is* the conversation, and only its new turn is recorded. Knows the
gateway's input type, never providers.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import AsyncIterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import HTTPConnection, Request
from starlette.responses import StreamingResponse

from rhetor.api.presented import HEADER_DICT as _HEADERS  # the request's headers as a dict (`header`)
from rhetor.api.responses import EncodedResponse, parse_json
from rhetor.api.state import gateway
from rhetor.api.streaming import ClosingStreamingResponse
from rhetor.context.store import validate_context_id
from rhetor.gateway import ChatInput, StreamSession
from rhetor.routing.fallback import RunInfo
from rhetor.routing.models import ModelRoute
from rhetor.types import Message

B = TypeVar("B", bound=BaseModel)
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
_SSE_HEADER_LIST = [(k.encode(), v.encode()) for k, v in SSE_HEADERS.items()]


async def read_body(request: Request, model: type[B]) -> B:
    """The validated body; malformed JSON or a bad field raises (answered 400 by compat_endpoint)."""
    return model.model_validate(parse_json(await request.body()))


def header_dict(request: HTTPConnection) -> dict[bytes, bytes]:
    """The request's headers as one dict, built once per request (the key middleware's, when it ran): lower-case
    names, the first value of a repeated one, as Starlette's `headers.get` answers."""
    scope = request.scope
    found: dict[bytes, bytes] | None = scope.get(_HEADERS)
    if found is None:
        found = scope[_HEADERS] = dict(reversed(scope["headers"]))
    return found


def header(request: HTTPConnection, name: bytes) -> str | None:
    """The request header `name` from `header_dict`: a front reads 5-7 headers, each otherwise a scan of the list
    through Starlette's Headers (~5% of an `oa` request's profiled calls, benchmarks/instructions.py --profile)."""
    value = header_dict(request).get(name)
    return None if value is None else value.decode("latin-1")


def resolve(request: Request, model: str) -> ModelRoute:
    gw = gateway(request)
    # (aliases, task header, then the providers file's names: positionally, as ModelNames.resolve takes them)
    return gw.model_names.resolve(model, gw.settings.model_aliases, header(request, b"x-rhetor-task"),
                                  gw.deployment_kinds, gw.listed_models)


def chat_input(request: Request, route: ModelRoute, messages: list[Message], system: str | None,
               options: dict[str, Any], **knobs: Any) -> ChatInput:
    """A ChatInput from a compat request: routing from the model name, context and component from headers."""
    found = header_dict(request)  # read inline: no `header` call per name (an empty value counts as none)
    raw = found.get(b"x-rhetor-context-id")
    context_id = raw.decode("latin-1") if raw else None
    if context_id is not None:
        validate_context_id(context_id)
    raw = found.get(b"x-rhetor-component")
    component = raw.decode("latin-1") if raw else None
    single = len(messages) == 1 and messages[0].role == "user" and context_id is not None
    # the first ten fields positionally, in ChatInput's order (each keyword: ~0.5k instructions, callgrind)
    return ChatInput(
        messages[0].content if single else None,  # message
        None if single else messages, messages[0].images if single else None,  # messages, images
        context_id, route.task_type, component, route.provider_id, route.model_id, system,
        {k: v for k, v in options.items() if v is not None} if options else {},  # options
        pinned=route.pinned, **knobs)


def rhetor_header_list(provider: str, model: str, info: RunInfo, simulated: bool) -> list[tuple[bytes, bytes]]:
    """The answer's `x-rhetor-*` headers (who answered, fallback, simulated, deployment), encoded."""
    out = [(b"x-rhetor-provider", provider.encode("latin-1")), (b"x-rhetor-model", model.encode("latin-1")),
           (b"x-rhetor-fallback", b"true" if info.fallback else b"false"),
           (b"x-rhetor-simulated", b"true" if simulated else b"false")]
    if info.target and info.target.deployment:
        out.append((b"x-rhetor-deployment", info.target.deployment.encode("latin-1")))
    return out


def rhetor_headers(provider: str, model: str, info: RunInfo, simulated: bool) -> dict[str, str]:
    return {k.decode(): v.decode("latin-1") for k, v in rhetor_header_list(provider, model, info, simulated)}


def session_header_list(session: StreamSession) -> list[tuple[bytes, bytes]]:
    """A stream's headers: no caching or proxy buffering, and who answers, encoded."""
    return [*_SSE_HEADER_LIST, *rhetor_header_list(session.provider, session.model, session.info, session.simulated)]


def session_headers(session: StreamSession) -> dict[str, str]:
    return {k.decode(): v.decode("latin-1") for k, v in session_header_list(session)}


def sse_response(frames: AsyncIterable[bytes],
                 headers: Mapping[str, str] | list[tuple[bytes, bytes]]) -> StreamingResponse:
    """An SSE response; `headers` encoded already (a list of byte pairs) go out as given, before the content type,
    where Starlette puts a headers dict (see EncodedResponse)."""
    if not isinstance(headers, list):
        return ClosingStreamingResponse(frames, media_type="text/event-stream", headers=headers)
    return ClosingStreamingResponse.sse(frames, headers)


class _Ids:
    """Reply ids: a random per-process half and a counter (24 hex digits, as uuid4().hex[:24] gave) — unique,
    without uuid4's getrandom syscall per reply (strace -c: one per OpenAI-front request; timeit 4.3 -> 0.6 us).
    Re-seeded in a forked child, so workers never share a sequence."""

    def __init__(self) -> None:
        self.seed()

    def seed(self) -> None:
        self.head, self.count = uuid.uuid4().hex[:12], itertools.count(int.from_bytes(os.urandom(5)))

    def next(self, prefix: str) -> str:
        return f"{prefix}{self.head}{next(self.count) & 0xFFFFFFFFFFFF:012x}"


_IDS = _Ids()
os.register_at_fork(after_in_child=_IDS.seed)


def new_id(prefix: str) -> str:
    return _IDS.next(prefix)


def unix_now() -> int:
    return int(time.time())


__all__ = ["EncodedResponse", "chat_input", "header", "header_dict", "new_id", "read_body", "resolve",
           "rhetor_header_list", "rhetor_headers", "session_header_list", "session_headers", "sse_response", "unix_now"]
