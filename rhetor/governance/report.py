"""Usage reports, shared by the usage API and `python -m rhetor usage`: parsing a time range (`7d`, `24h`, an ISO
date or time, unix seconds) and a `group_by` list with errors naming the parameter, and rendering a summary as
CSV or as a terminal table. Pure functions; knows nothing of HTTP or SQL.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rhetor.errors import InvalidRequestError
from rhetor.governance.ledger import GROUPS

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
METRICS = ("requests", "input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens",
           "total_tokens", "cost_usd", "errors", "cancelled", "unpriced", "estimated", "p50_latency_ms",
           "p95_latency_ms")
DEFAULT_SINCE = "7d"


def parse_time(value: str, param: str, now: float | None = None) -> float:
    """Unix seconds from `7d` / `24h` / `30m` (that long ago), an ISO date or datetime (UTC unless it says), or
    unix seconds."""
    now = time.time() if now is None else now
    raw = value.strip()
    m = _RELATIVE.match(raw.lower())
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequestError(f"{param} must be a duration ago (7d, 24h, 30m), an ISO date or time, or unix "
                                  f"seconds; got {value!r}", param=param) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def time_range(since: str | None, until: str | None, now: float | None = None) -> tuple[float, float]:
    now = time.time() if now is None else now
    start = parse_time(since or DEFAULT_SINCE, "from", now)
    end = parse_time(until, "to", now) if until else now + 1
    if end <= start:
        raise InvalidRequestError("'to' must be later than 'from'", param="to")
    return start, end


def parse_group_by(value: str | None, param: str = "group_by") -> list[str]:
    groups = [g.strip().lower() for g in (value or "").split(",") if g.strip()]
    for g in groups:
        if g not in GROUPS:
            raise InvalidRequestError(f"{param}: unknown group {g!r}; expected any of {', '.join(GROUPS)}",
                                      param=param)
    if len(set(groups)) != len(groups):
        raise InvalidRequestError(f"{param}: a group is named twice", param=param)
    return groups


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def to_csv(summary: dict[str, Any], group_by: Sequence[str]) -> str:
    """One row per bucket (or one `total` row without groups), group columns first."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*group_by, *METRICS])
    rows = summary["buckets"] if group_by else [summary["totals"]]
    for row in rows:
        writer.writerow([*(row.get(g) for g in group_by), *(row.get(m) for m in METRICS)])
    return out.getvalue()


TABLE_METRICS = ("requests", "input_tokens", "output_tokens", "cost_usd", "errors", "p50_latency_ms",
                 "p95_latency_ms")
_HEADERS = {"input_tokens": "in tokens", "output_tokens": "out tokens", "cost_usd": "cost $",
            "p50_latency_ms": "p50 ms", "p95_latency_ms": "p95 ms"}


def _cell(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name == "cost_usd":
        return f"{value:.4f}"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def to_table(summary: dict[str, Any], group_by: Sequence[str]) -> str:
    """A plain-text table for a terminal: one line per bucket, then the total."""
    header = [*(g for g in group_by), *(_HEADERS.get(m, m) for m in TABLE_METRICS)]
    rows = [[*(str(b.get(g) if b.get(g) is not None else "-") for g in group_by),
             *(_cell(m, b.get(m)) for m in TABLE_METRICS)] for b in summary["buckets"]]
    total = summary["totals"]
    rows.append([*(["total"] + [""] * (len(group_by) - 1) if group_by else []),
                 *(_cell(m, total.get(m)) for m in TABLE_METRICS)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    width_groups = len(group_by)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < width_groups else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    sep = "  ".join("-" * w for w in widths)
    body = [line(r) for r in rows]
    return "\n".join([line(header), sep, *body[:-1], *([sep] if len(body) > 1 else []), body[-1]]) + "\n"


__all__ = ["DEFAULT_SINCE", "METRICS", "iso", "parse_group_by", "parse_time", "time_range", "to_csv", "to_table"]
