"""The budgets API over rhetor.governance (budgets, spend, policies):

- `GET /api/v1/budgets` → every budget with its spend per period; `GET /api/v1/budgets/{id}` → one;
- `PUT /api/v1/budgets/{id}` (create or replace), `POST /api/v1/budgets` (create, id in the body),
  `DELETE /api/v1/budgets/{id}`: with RHETOR_ADMIN_KEY set these need the admin key (401 otherwise); with no
  key configured at all Rhetor is open, as everywhere else;
- `GET /api/v1/budget` (and R1's `/budget`): the original shape — the global daily / weekly / monthly usage,
  limits and policies.
A malformed definition is a 400 naming the field. Plain Starlette routes; errors in the native envelope.
Knows the governance service, nothing of the gateway or providers.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rhetor.api.presented import presented_key
from rhetor.api.responses import json_response, parse_json
from rhetor.errors import AuthenticationError, InvalidRequestError, TemplateNotFoundError, UsageUnavailableError
from rhetor.governance.budgets import BUDGET_ID, GLOBAL, PERIODS, iso, parse_budget, period_bounds
from rhetor.governance.ledger import UsageFilter
from rhetor.governance.spending import Spending


def spending_of(request: Request) -> Spending:
    gov = getattr(request.app.state, "governance", None)
    spending: Spending | None = getattr(gov, "spending", None)
    if spending is None:
        raise UsageUnavailableError("budgets are not available in this process")
    return spending


def _admin(request: Request) -> None:
    """Changes need RHETOR_ADMIN_KEY once keys are configured (the key ring of rhetor.governance.access); an open
    Rhetor stays open. The admin key is compared by its SHA-256, in constant time."""
    ring = getattr(getattr(request.app.state.governance, "access", None), "ring", None)
    admin: bytes | None = getattr(ring, "admin_digest", None)
    if admin is None and not getattr(ring, "required", False):
        return
    secret = presented_key(request.scope.get("headers", ()))
    if admin is None or secret is None or not hmac.compare_digest(hashlib.sha256(secret).digest(), admin):
        raise AuthenticationError("changing budgets needs the admin key (RHETOR_ADMIN_KEY) as 'Authorization: Bearer "
                                  "<admin key>' or 'x-api-key'")


def _id(request: Request) -> str:
    budget_id: str = request.path_params["budget_id"]
    if not BUDGET_ID.match(budget_id):
        raise InvalidRequestError(f"id: {budget_id[:80]!r} is not a budget id (letters, digits, '_.:-', at most 64)",
                                  param="id")
    return budget_id


async def _definition(request: Request) -> Any:
    try:
        return parse_json(await request.body())
    except RequestValidationError as exc:
        raise InvalidRequestError(f"body: {exc.errors()[0]['msg']}", param="body") from None


def _found(spending: Spending, budget_id: str) -> dict[str, Any]:
    budget = spending.book.budgets.get(budget_id)
    if budget is None:
        raise TemplateNotFoundError(f"no budget {budget_id!r}")
    return spending.book.status(budget)


async def list_budgets(request: Request) -> Response:
    spending = spending_of(request)
    items = [spending.book.status(b) for b in spending.book.budgets.values()]
    return json_response({"budgets": items, "total": len(items), "error": spending.error})


async def get_budget(request: Request) -> Response:
    return json_response(_found(spending_of(request), _id(request)))


async def put_budget(request: Request) -> Response:
    _admin(request)
    budget_id = _id(request)
    spending = spending_of(request)
    created = await spending.put(parse_budget(await _definition(request), budget_id))
    return json_response(_found(spending, budget_id), 201 if created else 200)


async def post_budget(request: Request) -> Response:
    _admin(request)
    spending = spending_of(request)
    budget = parse_budget(await _definition(request))
    if budget.id in spending.book.budgets:
        raise InvalidRequestError(f"id: a budget {budget.id!r} exists; PUT /api/v1/budgets/{budget.id} replaces it",
                                  param="id")
    await spending.put(budget)
    return json_response(_found(spending, budget.id), 201)


async def delete_budget(request: Request) -> Response:
    _admin(request)
    budget_id = _id(request)
    if not await spending_of(request).delete(budget_id):
        raise TemplateNotFoundError(f"no budget {budget_id!r}")
    return json_response({"deleted": True, "id": budget_id})


async def original(request: Request) -> Response:
    """R1's budget summary: the global usage per period, its limits and its policies."""
    spending = spending_of(request)
    book, now = spending.book, time.time()
    budget = next((b for b in book.budgets.values() if b.subject == GLOBAL), None)
    usage: dict[str, Any] = {}
    for period in PERIODS:
        start, end = period_bounds(period, now)  # type: ignore[arg-type]
        if budget is not None:
            w = book.counters.window(GLOBAL, period, now)  # type: ignore[arg-type]
            cost, tokens = w.usd, w.tokens
        else:
            cost, tokens = await _ledger_spend(spending, start, now)
        usage[period] = {"cost": round(cost, 6), "tokens": tokens, "start": iso(start), "resets_at": iso(end)}
    limits = {p: getattr(budget, f"{p}_usd", None) if budget else None for p in PERIODS}
    policies = {p: budget.policy if budget else "ignore" for p in PERIODS}
    warnings = [f"{p} budget at {usage[p]['cost'] / lim:.0%} (${usage[p]['cost']:.4f} of ${lim:.2f})"
                for p, lim in limits.items() if lim and usage[p]["cost"] >= lim * (budget.warn_at if budget else 1)]
    return json_response({"usage": usage, "limits": limits, "policies": policies, "warnings": warnings,
                          "budget_id": budget.id if budget else None,
                          "budgets": [book.status(b) for b in book.budgets.values()]})


async def _ledger_spend(spending: Spending, start: float, now: float) -> tuple[float, int]:
    ledger = spending.ledger
    if ledger is None:
        return 0.0, 0
    try:
        await ledger.flush()
        totals = (await ledger.store.summary(UsageFilter(start, now + 1), []))["totals"]
    except Exception:
        return 0.0, 0
    return float(totals["cost_usd"]), int(totals["total_tokens"])


routes: list[BaseRoute] = [
    Route("/api/v1/budgets", list_budgets, methods=["GET"]),
    Route("/api/v1/budgets", post_budget, methods=["POST"]),
    Route("/api/v1/budgets/{budget_id}", get_budget, methods=["GET"]),
    Route("/api/v1/budgets/{budget_id}", put_budget, methods=["PUT"]),
    Route("/api/v1/budgets/{budget_id}", delete_budget, methods=["DELETE"]),
    Route("/api/v1/budget", original, methods=["GET"]),
    Route("/budget", original, methods=["GET"]),
]

__all__ = ["routes"]
