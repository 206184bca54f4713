"""The usage API over the ledger (rhetor.governance):

- `GET /api/v1/usage?from&to&group_by=component,model,provider,key,task,day,hour,minute,front,status&format=json|csv`
  → `{from, to, group_by, totals, buckets}`, each with requests, tokens, cost, errors, fallbacks and p50/p95
  latency (`hour`/`minute` are UTC time buckets, `2026-01-02T03:04Z`);
- `GET /api/v1/usage/requests?from&to&component&model&provider&key&task&front&status&limit&offset` → recent
  records, newest first, paged.
Buffered records are flushed before a query, so a reply includes every request that has finished. Plain
Starlette routes; errors in the native envelope, naming the parameter. Knows the ledger, not its storage.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rhetor.api.responses import json_response
from rhetor.errors import InvalidRequestError, RhetorError, UsageUnavailableError
from rhetor.governance.ledger import Ledger, UsageFilter
from rhetor.governance.report import iso, parse_group_by, time_range, to_csv
from rhetor.governance.service import Governance

FILTERS = ("component", "model", "provider", "key", "task", "front", "status")


def governance_of(request: Request) -> Governance | None:
    gov: Governance | None = getattr(request.app.state, "governance", None)
    return gov


def usage_status(app: Any) -> dict[str, Any]:
    """The ledger's health detail: ok / degraded (store unavailable: records buffered, bounded) / disabled."""
    gov: Governance | None = getattr(app.state, "governance", None)
    return gov.status() if gov is not None else {"state": "disabled"}


async def _ledger(request: Request) -> Ledger:
    gov = governance_of(request)
    if gov is None or gov.ledger is None:
        raise UsageUnavailableError("the usage ledger is off (RHETOR_USAGE_LEDGER=0)")
    await gov.ledger.flush()
    if gov.ledger.last_error is not None:
        raise UsageUnavailableError(f"the usage store is unavailable: {gov.ledger.last_error}; requests are still "
                                    f"served and their records buffered")
    return gov.ledger


def _filter(request: Request) -> UsageFilter:
    q = request.query_params
    since, until = time_range(q.get("from"), q.get("to"))
    return UsageFilter(since, until, **{name: q.get(name) or None for name in FILTERS})


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequestError(f"{name} must be an integer, got {raw!r}", param=name) from None
    if not low <= value <= high:
        raise InvalidRequestError(f"{name} must be between {low} and {high}, got {value}", param=name)
    return value


async def usage(request: Request) -> Response:
    group_by = parse_group_by(request.query_params.get("group_by"))
    fmt = (request.query_params.get("format") or "json").lower()
    if fmt not in ("json", "csv"):
        raise InvalidRequestError(f"format must be json or csv, got {fmt!r}", param="format")
    flt = _filter(request)
    ledger = await _ledger(request)
    try:
        summary = await ledger.store.summary(flt, group_by)
    except RhetorError as exc:
        raise UsageUnavailableError(f"the usage store cannot be read: {exc.message}") from None
    if fmt == "csv":
        return Response(to_csv(summary, group_by), media_type="text/csv",
                        headers={"content-disposition": 'attachment; filename="rhetor-usage.csv"'})
    return json_response({"from": iso(flt.since), "to": iso(flt.until), "group_by": group_by, **summary})


async def usage_requests(request: Request) -> Response:
    limit, offset = _int(request, "limit", 50, 1, 1000), _int(request, "offset", 0, 0, 10**9)
    flt = _filter(request)
    ledger = await _ledger(request)
    try:
        records, total = await ledger.store.records(flt, limit=limit, offset=offset)
    except RhetorError as exc:
        raise UsageUnavailableError(f"the usage store cannot be read: {exc.message}") from None
    items = [{**r.as_dict(), "time": iso(r.ts)} for r in records]
    return json_response({"from": iso(flt.since), "to": iso(flt.until), "total": total, "limit": limit,
                          "offset": offset, "records": items})


routes: list[BaseRoute] = [
    Route("/api/v1/usage", usage, methods=["GET"]),
    Route("/api/v1/usage/requests", usage_requests, methods=["GET"]),
]

__all__ = ["routes", "usage_status"]
