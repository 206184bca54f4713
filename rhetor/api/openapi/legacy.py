"""OpenAPI declarations of the LLM Adapter shim (rhetor.api.legacy.http, contracts §1-2): `/providers`, `/provider`,
`/message`, `/chat`, `/stream` and their `/api/*` aliases. A provider failure is HTTP 200 with `{error, context,
timestamp}` (the adapter's contract); a malformed body is a 422 in the native envelope. Declarations only.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from rhetor.api.legacy.http import LegacyBody
from rhetor.api.openapi.common import NATIVE, Frames, LegacyError, Op, Open, errors, resp, stream
from rhetor.api.openapi.native import Providers, Usage

TAG = "legacy"


class LegacyResult(Open):
    """The adapter's answer: `message` (R1) and `content` carry the text."""

    message: str
    content: str
    model: str
    provider: str
    context: str
    finished: bool
    timestamp: str
    simulated: bool
    fallback: bool
    usage: Usage
    context_id: str | None = None
    context_scope: str | None = None


class SetProvider(BaseModel):
    """`{provider_id, model_id?}` (`provider`/`model` are accepted too)."""

    model_config = ConfigDict(extra="allow")
    provider_id: str | None = None
    model_id: str | None = None
    provider: str | None = None
    model: str | None = None


class ProviderSet(Open):
    success: bool
    provider: str | None = None
    model: str | None = None
    error: str | None = None
    detail: str | None = None


class LegacyFrame(Open):
    """One `event: message` frame; the last has `done: true` (and `error` when the call failed)."""

    chunk: str
    context: str | None = None
    model: str | None = None
    provider: str | None = None
    timestamp: str
    done: bool
    error: str | None = None


_SSE = Frames("`event: message` / `data: {chunk, context, model, provider, timestamp, done}` frames, ending with "
              "`done: true` (no [DONE] sentinel)", (LegacyFrame,))
_ERR = {k: resp(v.description, *v.models, LegacyError) for k, v in errors(NATIVE, 400, 422).items()}
_ANSWER = {200: resp("The answer, or `{error, context, timestamp}` when every provider failed (HTTP 200, as the "
                     "adapter did); with streaming: true an event stream", LegacyResult, LegacyError, sse=_SSE),
           **_ERR}

OPS = [
    *(Op("GET", path, "Providers in the R1 shape, with current_provider/current_model", TAG,
         {200: resp("Providers", Providers), **_ERR}) for path in ("/providers", "/api/providers")),
    *(Op("POST", path, "Set the default provider and model of later legacy calls", TAG,
         {200: resp("Set", ProviderSet), 400: resp("Unknown provider or model", ProviderSet),
          **{k: v for k, v in _ERR.items() if k != 400}}, body=SetProvider)
      for path in ("/provider", "/api/provider")),
    Op("POST", "/message", "The adapter's message call: `{message, context_id, options}`", TAG, _ANSWER,
       body=LegacyBody),
    Op("POST", "/chat", "The adapter's chat call: `{messages, context_id, options}`", TAG, _ANSWER, body=LegacyBody),
    Op("POST", "/stream", "The adapter's stream: SSE `event: message` frames", TAG,
       {200: stream(_SSE), **_ERR}, body=LegacyBody),
]

__all__ = ["OPS"]
