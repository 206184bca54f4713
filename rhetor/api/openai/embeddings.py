"""POST /v1/embeddings, OpenAI's shape: `{input: str | [str], model, encoding_format?: float|base64}` →
`{object:"list", data:[{object:"embedding", index, embedding}], model, usage{prompt_tokens, total_tokens}}`.

Served by providers with the EmbeddingProvider capability: `openai/<model>` (or bare `text-embedding-*`),
`ollama/<model>`, and `simulated/simulated-embedding` (deterministic, 384 dimensions). The official SDK asks
for base64 by default: little-endian float32, as OpenAI sends it. Called directly on the provider (no fallback
chain: a vector space is not interchangeable). Input may also be token ids (`[int]` or `[[int]]`, what LangChain's
OpenAIEmbeddings sends by default): passed to a provider that takes them (OpenAI), else a 400 that says how to send
text instead. Errors are OpenAI's. Knows the provider protocol, no wire.
"""

from __future__ import annotations

import array
import base64
import sys
import time
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rhetor.api.attribution import caller, identity
from rhetor.api.compat.common import read_body, resolve
from rhetor.api.compat.errors import compat_endpoint
from rhetor.api.openai.errors import OPENAI
from rhetor.api.responses import json_response
from rhetor.api.state import gateway
from rhetor.errors import InvalidRequestError, PermissionDeniedError, ProviderUnavailableError
from rhetor.providers.base import EmbeddingProvider, Embeddings
from rhetor.timing import add_upstream_wait
from rhetor.types import Usage

MAX_INPUTS = 2048


@runtime_checkable
class TokenEmbedder(Protocol):
    """An embedding provider whose vendor takes token ids as input (OpenAI)."""

    async def embed_tokens(self, tokens: list[list[int]], model: str | None = None) -> Embeddings: ...


class EmbeddingsBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    input: (str | Annotated[list[str], Field(min_length=1, max_length=MAX_INPUTS)]
            | Annotated[list[int], Field(min_length=1)]
            | Annotated[list[Annotated[list[int], Field(min_length=1)]], Field(min_length=1, max_length=MAX_INPUTS)])
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None


def encode(vector: list[float], fmt: str) -> list[float] | str:
    if fmt == "float":
        return vector
    packed = array.array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


async def embeddings(request: Request) -> Response:
    body = await read_body(request, EmbeddingsBody)
    route = resolve(request, body.model)
    if route.provider_id is None or route.model_id is None or not route.pinned:
        raise InvalidRequestError("embeddings need a provider model (e.g. openai/text-embedding-3-small, "
                                  "ollama/nomic-embed-text, simulated/simulated-embedding), not a task route",
                                  param="model")
    who = identity(request)
    if who is not None and who.restricted and not who.allows(route.provider_id, route.model_id):
        raise PermissionDeniedError(f"key {who.name!r} ({who.key_id}) may not use {route.provider_id}/"
                                    f"{route.model_id}", param="model")
    provider = gateway(request).providers.get(route.provider_id)
    if not isinstance(provider, EmbeddingProvider):
        raise InvalidRequestError(f"provider {route.provider_id!r} does not offer embeddings", param="model")
    availability = await provider.available()
    if not availability.ok:
        raise ProviderUnavailableError(availability.reason, provider=route.provider_id, model=route.model_id)
    texts, tokens = _inputs(body.input)
    if tokens is not None and not isinstance(provider, TokenEmbedder):
        raise InvalidRequestError(
            f"input is token ids, which provider {route.provider_id!r} cannot take and Rhetor has no tokenizer of "
            f"{route.model_id!r} to decode them: send the text instead (LangChain's OpenAIEmbeddings: "
            "check_embedding_ctx_length=False)", param="input")
    started = time.perf_counter()
    try:
        if tokens is not None and isinstance(provider, TokenEmbedder):
            result = await provider.embed_tokens(tokens, route.model_id)
        else:
            result = await provider.embed(texts, route.model_id)
    except BaseException as exc:
        _meter(request, route.provider_id, route.model_id, started, None, exc)
        raise
    finally:
        add_upstream_wait(time.perf_counter() - started)
    _meter(request, route.provider_id, route.model_id, started, Usage(result.input_tokens, 0))
    data: list[dict[str, Any]] = [{"object": "embedding", "index": i, "embedding": encode(v, body.encoding_format)}
                                  for i, v in enumerate(result.vectors)]
    return json_response({"object": "list", "data": data, "model": f"{route.provider_id}/{result.model}",
                          "usage": {"prompt_tokens": result.input_tokens, "total_tokens": result.input_tokens}})


def _inputs(value: Any) -> tuple[list[str], list[list[int]] | None]:
    """(texts, None) or ([], token id lists)."""
    if isinstance(value, str):
        return [value], None
    if value and isinstance(value[0], int):
        return [], [value]
    if value and isinstance(value[0], list):
        return [], value
    return value, None


def _meter(request: Request, provider: str, model: str, started: float, usage: Usage | None,
           error: BaseException | None = None) -> None:
    """One usage-ledger record for this call (rhetor.governance), whether it answered or failed."""
    meter = gateway(request).meter
    if meter is not None:
        rid, key = caller(request)
        who = identity(request)
        component = (who.component if who is not None else None) or request.headers.get("x-rhetor-component")
        meter.direct(front="embeddings", request_id=rid, key_id=key, component=component, task_type="embeddings",
                     provider=provider, model=model, started=started, usage=usage, error=error)


routes: list[BaseRoute] = [Route("/v1/embeddings", compat_endpoint(OPENAI, embeddings), methods=["POST"])]

__all__ = ["EmbeddingsBody", "embeddings", "encode", "routes"]
