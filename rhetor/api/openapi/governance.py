"""OpenAPI declarations of the governance routes: the usage API over the ledger (rhetor.api.usage), budgets
(rhetor.api.budgets, and R1's `/budget`), the caller-key admin API (rhetor.api.keys) and the live reload
(rhetor.api.admin). The budget and key
bodies are rhetor.governance.budget.Budget and rhetor.governance.keys.KeySpec themselves (what the handlers
validate with), documented under their API names. Declarations only.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from rhetor.api.openapi.common import NATIVE, Op, Open, Param, Resp, errors, resp
from rhetor.governance.budget import BUDGET_ID, Budget
from rhetor.governance.keys import NAME, KeySpec

TAG = "governance"
_GROUPS = "component,model,provider,key,task,day,hour,minute,front,status"


class UsageSummary(Open):
    """Totals and buckets (one per group), each with requests, tokens, cost, errors, fallbacks, p50/p95 latency."""

    to: str
    group_by: list[str]
    totals: dict[str, Any]
    buckets: list[dict[str, Any]]


class UsageRecords(Open):
    to: str
    total: int
    limit: int
    offset: int
    records: list[dict[str, Any]]


class BudgetStatus(Open):
    """A budget with its spend per period."""

    id: str
    scope: str
    policy: str
    periods: dict[str, Any]


class Budgets(Open):
    budgets: list[BudgetStatus]
    total: int
    error: str | None = None


class BudgetPut(Budget):
    """A budget definition; on PUT the path gives the id. At least one limit; a scope other than global names
    its target; the downgrade policy needs `downgrade_to` (provider/model)."""

    id: Annotated[str, Field(pattern=BUDGET_ID.pattern)] | None = None  # type: ignore[assignment]


class BudgetBody(Budget):
    """A budget definition with its id (POST)."""


class KeyBody(KeySpec):
    """A caller key's definition (create: `name` required; update: any subset). Unknown fields are refused."""

    name: Annotated[str, Field(pattern=NAME.pattern)] | None = None  # KeySpec checks it in a validator


class BudgetDeleted(Open):
    deleted: bool
    id: str


class R1Budget(Open):
    """R1's budget summary: global usage per period, limits and policies."""

    usage: dict[str, Any]
    limits: dict[str, float | None]
    policies: dict[str, str]
    warnings: list[str]
    budget_id: str | None = None
    budgets: list[BudgetStatus]


class Key(Open):
    id: str
    name: str
    key_hint: str
    state: str
    created_at: float


class KeyEnvelope(Open):
    key: Key


class KeySecret(KeyEnvelope):
    """The secret is shown once."""

    secret: str
    note: str


class Keys(Open):
    keys: list[Key]
    total: int


class KeyRevoked(KeyEnvelope):
    revoked: bool


_RANGE = (Param("from", description="Start: ISO 8601 or relative (7d, 24h)"),
          Param("to", description="End: ISO 8601 or relative"))
_FILTERS = tuple(Param(n) for n in ("component", "model", "provider", "key", "task", "front", "status"))
_USAGE_ERR = errors(NATIVE, 400, 503)
_BID = Param("budget_id", "path", "A budget id", required=True)
_KID = Param("key_id", "path", "A key id", required=True)
class Reloaded(Open):
    """What a reload read (rhetor.config.reload): the new generation, the files, routes and deployments."""

    status: str
    generation: int
    origin: str
    files: dict[str, str | None]
    routes: int
    deployments: int
    warnings: list[str]
    took_ms: float
    workers: int | None = None


class ReloadStatus(Open):
    generation: int
    last: dict[str, Any] | None


_ADMIN = "Needs RHETOR_ADMIN_KEY (Bearer or x-api-key)"
_KEY_ERR = errors(NATIVE, 400, 404, 409)


def _budget_op(method: str, path: str, summary: str, ok: dict[int | str, Resp], **kw: Any) -> Op:
    return Op(method, path, summary, "budgets", {**ok, **errors(NATIVE, 400, 404, 503, not_found_route=True)},
              **kw)


OPS = [
    Op("GET", "/api/v1/usage", "Usage summary (JSON or CSV), grouped", TAG,
       {200: Resp("The summary", (UsageSummary,), also={"text/csv": {"schema": {"type": "string"}}}),
        **_USAGE_ERR},
       params=(*_RANGE, Param("group_by", description=f"Comma-separated: {_GROUPS}"),
               Param("format", schema={"type": "string", "enum": ["json", "csv"]}), *_FILTERS)),
    Op("GET", "/api/v1/usage/requests", "Recent usage records, newest first, paged", TAG,
       {200: resp("Records", UsageRecords), **_USAGE_ERR},
       params=(*_RANGE, *_FILTERS, Param("limit", schema={"type": "integer", "minimum": 1, "maximum": 1000}),
               Param("offset", schema={"type": "integer", "minimum": 0}))),
    _budget_op("GET", "/api/v1/budgets", "Every budget with its spend", {200: resp("Budgets", Budgets)}),
    _budget_op("POST", "/api/v1/budgets", "Create a budget (id in the body). " + _ADMIN,
               {201: resp("Created", BudgetStatus)}, body=BudgetBody),
    _budget_op("GET", "/api/v1/budgets/{budget_id}", "One budget with its spend",
               {200: resp("The budget", BudgetStatus)}, params=(_BID,)),
    _budget_op("PUT", "/api/v1/budgets/{budget_id}", "Create or replace a budget. " + _ADMIN,
               {200: resp("Replaced", BudgetStatus), 201: resp("Created", BudgetStatus)}, body=BudgetPut,
               params=(_BID,)),
    _budget_op("DELETE", "/api/v1/budgets/{budget_id}", "Delete a budget. " + _ADMIN,
               {200: resp("Deleted", BudgetDeleted)}, params=(_BID,)),
    *(_budget_op("GET", path, "R1's budget summary (global usage, limits, policies per period)",
                 {200: resp("Summary", R1Budget)}) for path in ("/api/v1/budget", "/budget")),
    Op("POST", "/api/v1/keys", "Create a caller key (the secret is shown once). " + _ADMIN, "keys",
       {201: resp("Created", KeySecret), **_KEY_ERR}, body=KeyBody),
    Op("GET", "/api/v1/keys", "List caller keys. " + _ADMIN, "keys", {200: resp("Keys", Keys), **_KEY_ERR},
       params=(Param("include_revoked", schema={"type": "boolean"}),)),
    Op("GET", "/api/v1/keys/{key_id}", "One key. " + _ADMIN, "keys", {200: resp("The key", KeyEnvelope), **_KEY_ERR},
       params=(_KID,)),
    *(Op(method, "/api/v1/keys/{key_id}", "Update a key. " + _ADMIN, "keys",
         {200: resp("Updated", KeyEnvelope), **_KEY_ERR}, body=KeyBody, params=(_KID,)) for method in ("PATCH", "PUT")),
    Op("DELETE", "/api/v1/keys/{key_id}", "Revoke a key. " + _ADMIN, "keys",
       {200: resp("Revoked", KeyRevoked), **_KEY_ERR}, params=(_KID,)),
    Op("POST", "/api/v1/keys/{key_id}/rotate", "A new secret for a key. " + _ADMIN, "keys",
       {200: resp("Rotated", KeySecret), **_KEY_ERR}, params=(_KID,)),
    Op("POST", "/api/v1/admin/reload", "Re-read tasks.json, the providers file, the catalogue and the prices without "
       "dropping a request; a bad file is a 400 with check-config's message and the running config stays. " + _ADMIN,
       "admin", {200: resp("Reloaded", Reloaded), **errors(NATIVE, 400, 503)}),
    Op("GET", "/api/v1/admin/reload", "The configuration's generation and the last reload attempt. " + _ADMIN,
       "admin", {200: resp("Reload status", ReloadStatus), **errors(NATIVE)}),
]

__all__ = ["OPS"]
