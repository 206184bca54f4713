"""What the OpenAI- and Anthropic-compatible fronts share: reading and validating a body, the Rhetor headers
(`x-rhetor-task`, `x-rhetor-context-id`, `x-rhetor-component` in; provider/model/fallback/simulated out), the
model-name resolution call, the context rule for standard clients, SSE responses and ids.

Context rule: without `x-rhetor-context-id` a request is stateless. With it, a request whose conversation is
a single user message continues the stored conversation (stored history + that message, like the native
`message` form); a longer conversation *is* the conversation, and only its new turn is recorded. Knows the
gateway's input type, never providers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import StreamingResponse

from rhetor.api.responses import parse_json
from rhetor.api.state import gateway
from rhetor.api.streaming import ClosingStreamingResponse
from rhetor.context.store import validate_context_id
from rhetor.gateway import ChatInput, StreamSession
from rhetor.routing.fallback import RunInfo
from rhetor.routing.models import ModelRoute, resolve_model_name
from rhetor.types import Message

B = TypeVar("B", bound=BaseModel)
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def read_body(request: Request, model: type[B]) -> B:
    """The validated body; malformed JSON or a bad field raises (answered 400 by compat_endpoint)."""
    return model.model_validate(parse_json(await request.body()))


def resolve(request: Request, model: str) -> ModelRoute:
    gw = gateway(request)
    return resolve_model_name(model, aliases=gw.settings.model_aliases,
                              task_header=request.headers.get("x-rhetor-task"),
                              deployments=gw.deployment_kinds, listed=gw.listed_models)  # providers file names


def chat_input(request: Request, route: ModelRoute, messages: list[Message], system: str | None,
               options: dict[str, Any], **knobs: Any) -> ChatInput:
    """A ChatInput from a compat request: routing from the model name, context and component from headers."""
    context_id = request.headers.get("x-rhetor-context-id") or None
    if context_id is not None:
        validate_context_id(context_id)
    component = request.headers.get("x-rhetor-component") or None
    single = len(messages) == 1 and messages[0].role == "user" and context_id is not None
    return ChatInput(
        message=messages[0].content if single else None,
        messages=None if single else messages, images=messages[0].images if single else None,
        context_id=context_id, task_type=route.task_type, component=component,
        provider_id=route.provider_id, model_id=route.model_id, system_prompt=system,
        options={k: v for k, v in options.items() if v is not None}, pinned=route.pinned, **knobs)


def rhetor_headers(provider: str, model: str, info: RunInfo, simulated: bool) -> dict[str, str]:
    return {"x-rhetor-provider": provider, "x-rhetor-model": model,
            "x-rhetor-fallback": "true" if info.fallback else "false",
            "x-rhetor-simulated": "true" if simulated else "false",
            **({"x-rhetor-deployment": info.target.deployment} if info.target and info.target.deployment else {})}


def session_headers(session: StreamSession) -> dict[str, str]:
    return {**SSE_HEADERS, **rhetor_headers(session.provider, session.model, session.info, session.simulated)}


def sse_response(frames: AsyncIterator[bytes], headers: dict[str, str]) -> StreamingResponse:
    return ClosingStreamingResponse(frames, media_type="text/event-stream", headers=headers)


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def unix_now() -> int:
    return int(time.time())


__all__ = ["chat_input", "new_id", "read_body", "resolve", "rhetor_headers", "session_headers",
           "sse_response", "unix_now"]
