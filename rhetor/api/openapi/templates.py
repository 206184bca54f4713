"""OpenAPI declarations of the template routes (rhetor.api.native.templates) and the memory routes
(rhetor.api.native.memory): templates with versions and a render preview; search over a context, a component
or everything; a context's summary; the indexer's status. Request bodies are the handlers' own models.
Declarations only.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from rhetor.api.native.memory import SearchBody, SummarizeBody
from rhetor.api.native.templates import CreateBody, PutBody, RenderBody
from rhetor.api.openapi.common import NATIVE, Op, Open, Param, errors, resp
from rhetor.api.openapi.native import Attempt, Usage

TAG = "templates"


class TemplateVersion(Open):
    id: str
    version: int
    text: str
    variables: dict[str, Any]
    metadata: dict[str, Any]
    source: str | None = None
    created_at: str | None = None
    active: bool | None = None


class Template(TemplateVersion):
    active_version: int
    versions: list[int]
    builtin: bool
    overridden: bool
    version_written: int | None = Field(None, description="PUT: the version it wrote (null when it only activated)")


class Templates(Open):
    templates: list[Template]
    total: int


class Versions(Open):
    id: str
    active_version: int
    versions: list[TemplateVersion]


class TemplateDeleted(Open):
    id: str
    deleted: bool
    builtin: bool | None = None
    removed_versions: Any = None


class Rendered(Open):
    id: str
    version: int
    use_as: str | None = None
    text: str


class Hit(Open):
    id: int | str
    context_id: str | None = None
    role: str
    content: str
    timestamp: str | None = None
    score: float | None = None


class SearchResult(Open):
    query: str
    k: int
    retrieval: str
    context_id: str | None = None
    component: str | None = None
    results: list[Hit]


class Summary(Open):
    context_id: str
    summary: str
    message_count: int
    first_message_id: int | str
    last_message_id: int | str
    model: str
    provider: str
    simulated: bool
    fallback: bool
    usage: Usage
    attempts: list[Attempt]
    timestamp: str


class MemoryStatus(Open):
    retrieval: str
    embedder: str | None = None
    state: str
    backlog: int | None = None


_TID = Param("template_id", "path", "A template id", required=True)
_VERSION = Param("version", description="A version number (default: the active one)",
                 schema={"type": "integer", "minimum": 0})
_CID = Param("context_id", "path", "A context id", required=True)
_T_ERR = errors(NATIVE, 400, 404, 422, not_found_route=True)

OPS = [
    Op("GET", "/api/v1/templates", "List templates (built-in and user)", TAG,
       {200: resp("Templates", Templates), **errors(NATIVE)},
       params=(Param("component"), Param("task"))),
    Op("POST", "/api/v1/templates", "Create a template", TAG,
       {201: resp("Created", Template), **errors(NATIVE, 400, 409, 422)}, body=CreateBody),
    Op("GET", "/api/v1/templates/{template_id}", "A template (its active version, or ?version=)", TAG,
       {200: resp("The template", Template, TemplateVersion), **_T_ERR}, params=(_TID, _VERSION)),
    Op("PUT", "/api/v1/templates/{template_id}", "Write a new version (or activate one)", TAG,
       {200: resp("Updated", Template), 201: resp("Created", Template), **errors(NATIVE, 400, 404, 409, 422,
                                                                                not_found_route=True)},
       body=PutBody, params=(_TID,)),
    Op("DELETE", "/api/v1/templates/{template_id}", "Delete a user template (a built-in loses its overrides)", TAG,
       {200: resp("Deleted", TemplateDeleted), **_T_ERR}, params=(_TID,)),
    Op("GET", "/api/v1/templates/{template_id}/versions", "A template's versions", TAG,
       {200: resp("Versions", Versions), **_T_ERR}, params=(_TID,)),
    Op("POST", "/api/v1/templates/{template_id}/render", "Render a template (preview)", TAG,
       {200: resp("Rendered", Rendered), **errors(NATIVE, 400, 404, 422, 503, not_found_route=True)},
       body=RenderBody, body_required=False, params=(_TID,)),
    Op("GET", "/api/v1/memory/status", "The indexer: embedder, backlog, cache", "memory",
       {200: resp("Status", MemoryStatus), **errors(NATIVE, 400)},
       params=(Param("context_id", description="One context's indexing state"),)),
    Op("POST", "/api/v1/memory/search", "Search every stored conversation (or one context or component)", "memory",
       {200: resp("Hits", SearchResult), **errors(NATIVE, 400, 422)}, body=SearchBody),
    Op("POST", "/api/v1/components/{component}/search", "Search a component's conversations", "memory",
       {200: resp("Hits", SearchResult), **errors(NATIVE, 400, 422)}, body=SearchBody,
       params=(Param("component", "path", "A component (ergon, terma, ...)", required=True),)),
    *(Op("POST", f"{prefix}/contexts/{{context_id}}/search", "Search one context", "memory",
         {200: resp("Hits", SearchResult), **errors(NATIVE, 400, 404, 422, not_found_route=True)}, body=SearchBody,
         body_required=False, params=(_CID, Param("query", description="R1's form: the query in the URL"),
                                      Param("k", schema={"type": "integer", "minimum": 1, "maximum": 100})))
      for prefix in ("/api/v1", "")),
    *(Op("POST", f"{prefix}/contexts/{{context_id}}/summarize", "Summarize a context with its routed model",
         "memory", {200: resp("Summary", Summary), **errors(NATIVE, 400, 404, 422, 502, 503, 504,
                                                             not_found_route=True)},
         body=SummarizeBody, body_required=False, params=(_CID,))
      for prefix in ("/api/v1", "")),
]

__all__ = ["OPS"]
