"""Log format and the access log. `setup_logging` installs one handler on the root logger: JSON lines
(RHETOR_LOG_FORMAT=json, the default when stderr is not a terminal) or text, for Rhetor's and uvicorn's loggers
alike; warnings and errors logged while a request runs carry its request id. uvicorn's own start-up chatter is
replaced by Rhetor's one-line lifecycle messages (rhetor.api.health, rhetor.cli).

`AccessLog.line` writes the one access line per request at INFO on `rhetor.access`: request id, caller key
*name*, component, front, route, provider/model that answered, attempts, status, tokens, cost, latency, TTFT,
cache hit. Never a key; never message content. Knows logging and usage records; nothing of HTTP frameworks.
"""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

import orjson

from rhetor.governance.ledger import UsageRecord

ACCESS = logging.getLogger("rhetor.access")
# the HTTP request being served (a rhetor.observability.hub.RequestSlot, which has `rid`), set by the middleware
current_request: ContextVar[Any] = ContextVar("rhetor_request", default=None)
UVICORN_CHATTER = ("Started server process", "Waiting for application", "Application startup complete",
                   "Uvicorn running on", "Shutting down", "Application shutdown complete", "Finished server process")


def use_json(fmt: str) -> bool:
    return fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, msg, request_id (when there is one), the access fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": _iso(record.created), "level": record.levelname, "logger": record.name,
                               "msg": record.getMessage()}
        fields = getattr(record, "fields", None)
        if fields is not None:
            out.update(fields)
        elif record.levelno >= logging.WARNING:
            req = current_request.get()
            if req is not None:
                out["request_id"] = req.rid
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if record.levelno >= logging.WARNING and getattr(record, "fields", None) is None:
            req = current_request.get()
            if req is not None:
                line += f" [request_id={req.rid}]"
        return line


class _QuietUvicorn(logging.Filter):
    """uvicorn's start/stop lines at INFO say less than Rhetor's own lifecycle lines: dropped (kept at DEBUG)."""

    def __init__(self, debug: bool) -> None:
        super().__init__()
        self.debug = debug

    def filter(self, record: logging.LogRecord) -> bool:
        if self.debug or record.levelno != logging.INFO or not record.name.startswith("uvicorn"):
            return True
        return not record.getMessage().startswith(UVICORN_CHATTER)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json(fmt) else TextFormatter())
    handler.addFilter(_QuietUvicorn(level.lower() == "debug"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


PROBES = frozenset({"/health", "/api/health", "/api/v1/health", "/ready", "/api/ready", "/metrics"})


class AccessLog:
    """The access line of a request: from its usage record when it has one, else from the HTTP exchange."""

    def __init__(self, logger: logging.Logger = ACCESS) -> None:
        self.log = logger

    def enabled(self) -> bool:
        """Whether a line would be written at all (callers skip gathering its fields otherwise)."""
        return self.log.isEnabledFor(logging.INFO)

    def line(self, rec: UsageRecord | None, *, request_id: str | None, method: str | None, route: str | None,
             code: int | None, latency_ms: float, overhead_ms: float | None = None, front: str | None = None,
             key: str | None = None) -> None:
        log = self.log
        if not log.isEnabledFor(logging.INFO):
            return
        if rec is None and code is not None and code < 400 and route in PROBES:
            level = logging.DEBUG  # launchers and scrapers poll these; at INFO they would drown the log
            if not log.isEnabledFor(level):
                return
        else:
            level = logging.INFO
        f: dict[str, Any] = {"request_id": request_id, "method": method, "route": route, "status": code}
        if rec is not None:
            f.update(request_id=rec.request_id or request_id, key=rec.key_id, component=rec.component,
                     front=rec.front, provider=rec.provider, model=rec.model, attempts=len(rec.attempts),
                     fallback=rec.fallback, outcome=rec.status, input_tokens=rec.input_tokens,
                     output_tokens=rec.output_tokens, cached_tokens=rec.cached_tokens,
                     reasoning_tokens=rec.reasoning_tokens, estimated=rec.estimated, cost_usd=rec.cost_usd,
                     latency_ms=rec.latency_ms, ttft_ms=rec.ttft_ms,
                     cache_hit=bool(getattr(rec, "cache_hit", False)))
            msg = (f"{method or 'WS'} {route or rec.front} {code if code is not None else rec.status} "
                   f"{rec.provider}/{rec.model} {rec.latency_ms:.1f}ms in={rec.input_tokens} out={rec.output_tokens}"
                   f" ${rec.cost_usd:.6f} {rec.status}")
        else:
            f.update(key=key, front=front, latency_ms=round(latency_ms, 3))
            msg = f"{method} {route} {code} {latency_ms:.1f}ms"
        msg += f" request_id={f['request_id']}"
        if overhead_ms is not None:
            f["overhead_ms"] = round(overhead_ms, 3)
        log.log(level, msg, extra={"fields": f})


__all__ = ["ACCESS", "AccessLog", "JsonFormatter", "TextFormatter", "current_request", "setup_logging",
           "use_json"]
