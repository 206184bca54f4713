"""GET /v1/models and GET /v1/models/{id}: every model Rhetor can route to, as `provider/model`, plus the
configured aliases and the task routes `rhetor/<task>`.

The same path serves both SDKs: a request carrying `anthropic-version` (the Anthropic SDK always sends it)
gets Anthropic's shape (`{data:[{type:"model", id, display_name, created_at}], has_more, first_id, last_id}`),
anything else OpenAI's (`{object:"list", data:[{id, object:"model", created, owned_by}]}`). Unknown ids are
404 in the caller's format. The models are what each deployment lists live (rhetor.providers.listing; the
`x-rhetor-models-source` / `x-rhetor-models-fallback` headers say where each list came from). Knows the gateway
and the provider registry's model lists, never wire formats.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rhetor.api.anthropic.errors import ANTHROPIC
from rhetor.api.compat.errors import compat_endpoint, error_response
from rhetor.api.openai.errors import OPENAI
from rhetor.api.responses import json_response
from rhetor.api.state import gateway
from rhetor.errors import ModelNotFoundError
from rhetor.providers.base import EmbeddingProvider
from rhetor.providers.listing import listed_models, source_headers

EPOCH_ISO = "1970-01-01T00:00:00Z"


async def model_ids(request: Request) -> list[tuple[str, str]]:
    """(id, owner) for every routable model, in a stable order."""
    return (await _listed(request))[0]


async def _listed(request: Request) -> tuple[list[tuple[str, str]], dict[str, str]]:
    gw = gateway(request)
    out: list[tuple[str, str]] = []
    listings = await listed_models(gw.providers)
    for name, listing in listings.items():
        provider = gw.providers.get(name)
        names = list(listing.models)
        if isinstance(provider, EmbeddingProvider):
            names += [m for m in provider.embedding_models() if m not in names]
        out += [(f"{name}/{m}", name) for m in names]
    out += [(alias, "rhetor") for alias in gw.settings.model_aliases]
    out += [(f"rhetor/{key}", "rhetor") for key in gw.config.keys()]
    return list(dict.fromkeys(out)), source_headers(listings)


def _anthropic(request: Request) -> bool:
    return "anthropic-version" in request.headers


def _entry(model_id: str, owner: str, anthropic: bool) -> dict[str, Any]:
    if anthropic:
        return {"type": "model", "id": model_id, "display_name": model_id, "created_at": EPOCH_ISO}
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owner}


async def list_models(request: Request) -> Response:
    anthropic = _anthropic(request)
    ids, headers = await _listed(request)
    data = [_entry(i, owner, anthropic) for i, owner in ids]
    if anthropic:
        return json_response({"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                              "last_id": data[-1]["id"] if data else None}, headers=headers)
    return json_response({"object": "list", "data": data}, headers=headers)


async def get_model(request: Request) -> Response:
    wanted = request.path_params["model_id"]
    anthropic = _anthropic(request)
    for model_id, owner in await model_ids(request):
        if model_id == wanted:
            return json_response(_entry(model_id, owner, anthropic))
    err = ModelNotFoundError(f"The model {wanted!r} does not exist")
    return error_response(ANTHROPIC if anthropic else OPENAI, err)


async def _list(request: Request) -> Response:
    return await compat_endpoint(ANTHROPIC if _anthropic(request) else OPENAI, list_models)(request)


async def _get(request: Request) -> Response:
    return await compat_endpoint(ANTHROPIC if _anthropic(request) else OPENAI, get_model)(request)


routes: list[BaseRoute] = [
    Route("/v1/models", _list, methods=["GET"]),
    Route("/v1/models/{model_id:path}", _get, methods=["GET"]),
]

__all__ = ["list_models", "model_ids", "routes"]
