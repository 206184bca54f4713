"""One budget: a spending cap on a subject (global, a component, a caller key or a task type) with daily, weekly
and/or monthly limits in USD (and optionally tokens), a policy when crossed (`warn`, `downgrade` to a cheaper
target, `block`) and a soft warning threshold; its validation from a request body (a 400 naming the field), and
the UTC periods it counts over. Knows nothing of spend, HTTP, SQL or Redis.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rhetor.errors import InvalidRequestError

PERIODS = ("daily", "weekly", "monthly")
Period = Literal["daily", "weekly", "monthly"]
Scope = Literal["global", "component", "key", "task"]
Subject = tuple[str, str]  # (scope, name): ("global", "*"), ("component", "ergon"), ("key", "key_…"), ("task", …)
BUDGET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
GLOBAL: Subject = ("global", "*")
Usd = Annotated[float, Field(ge=0, le=1e9)]
Tokens = Annotated[int, Field(ge=0, le=10**15)]


class Budget(BaseModel):
    """One budget. `target` names the component / key id / task type it caps (none for `global`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=BUDGET_ID.pattern)]
    scope: Scope = "global"
    target: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    daily_usd: Usd | None = None
    weekly_usd: Usd | None = None
    monthly_usd: Usd | None = None
    daily_tokens: Tokens | None = None
    weekly_tokens: Tokens | None = None
    monthly_tokens: Tokens | None = None
    policy: Literal["warn", "downgrade", "block"] = "warn"
    downgrade_to: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+/\S+$", max_length=256)] | None = None
    warn_at: Annotated[float, Field(gt=0, le=1)] = 0.8
    description: Annotated[str, Field(max_length=1000)] | None = None

    @model_validator(mode="after")
    def _coherent(self) -> Budget:
        if self.scope == "global" and self.target is not None:
            raise ValueError("target: a global budget has no target")
        if self.scope != "global" and self.target is None:
            raise ValueError(f"target: a {self.scope} budget names its {self.scope} (e.g. 'ergon')")
        if not self.limits():
            raise ValueError("daily_usd: set at least one limit (daily/weekly/monthly _usd or _tokens)")
        if self.policy == "downgrade" and self.downgrade_to is None:
            raise ValueError("downgrade_to: the downgrade policy needs a cheaper target, as provider/model")
        if self.policy != "downgrade" and self.downgrade_to is not None:
            raise ValueError("downgrade_to: only the downgrade policy routes to another target")
        return self

    def limits(self) -> list[tuple[Period, float | None, int | None]]:
        out: list[tuple[Period, float | None, int | None]] = []
        for period in PERIODS:
            usd, tokens = getattr(self, f"{period}_usd"), getattr(self, f"{period}_tokens")
            if usd is not None or tokens is not None:
                out.append((period, usd, tokens))  # type: ignore[arg-type]
        return out

    @property
    def subject(self) -> Subject:
        return GLOBAL if self.scope == "global" else (self.scope, self.target or "")


def parse_budget(data: Any, budget_id: str | None = None) -> Budget:
    """A Budget from a request body (the path's id wins over the body's); a 400 naming the field otherwise."""
    if not isinstance(data, dict):
        raise InvalidRequestError("a budget definition is a JSON object", param="body")
    if budget_id is not None:
        if data.get("id") not in (None, budget_id):
            raise InvalidRequestError(f"id: the body says {data.get('id')!r} but the path says {budget_id!r}",
                                      param="id")
        data = {**data, "id": budget_id}
    try:
        return Budget.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        where, sep, rest = msg.partition(": ")
        if not loc and sep and " " not in where:  # a model-level check names its field first
            loc, msg = where, rest
        raise InvalidRequestError(f"{loc or 'body'}: {msg}", param=loc or "body") from None


def period_bounds(period: Period, now: float) -> tuple[float, float]:
    """[start, end) of the UTC day / ISO week (from Monday) / calendar month holding `now`."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        start, end = day, day + timedelta(days=1)
    elif period == "weekly":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    return start.timestamp(), end.timestamp()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")




__all__ = ["BUDGET_ID", "GLOBAL", "PERIODS", "Budget", "Period", "Scope", "Subject", "iso", "parse_budget",
           "period_bounds"]
