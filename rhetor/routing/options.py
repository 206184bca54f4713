"""Request-time `options`: the one validation of the options object a chat request carries, on every front.

The gateway calls `request_options` first thing for every request (native, legacy HTTP and WebSocket, the flat
WebSocket protocol, summarize, the OpenAI and Anthropic fronts), before routing or any I/O, so everything past
it (router, fallback runner, providers) only ever sees well-typed values. The field definitions are tasks.json's
(`rhetor.routing.config.Options`), loosened only where a request legitimately differs from a config entry.
A bad value is an `InvalidRequestError` (400 on every front) naming `options.<field>`. Unknown keys pass
through unchanged (R1 options were open). Pure: no I/O; knows nothing of HTTP, fronts or providers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Strict, ValidationError, ValidationInfo, field_validator, model_validator

from rhetor.errors import InvalidRequestError
from rhetor.routing.config import MAX_TOKENS_LIMIT, Options

RequestText = Annotated[str, Strict()] | None


class RequestOptions(Options):
    """`Options` as a request sends them. Differences from a tasks.json entry, all R1 semantics:
    `provider`/`model` are allowed (a per-request override); routing names are not canonicalized here (the
    router answers an unknown provider with the list of valid ones) and "" means "not set"; an integral float
    (`100.0`) is accepted where an integer is expected, as R1 did."""

    provider: RequestText = None
    model: RequestText = None
    fallback_provider: RequestText = None
    fallback_model: RequestText = None

    @field_validator("fallback_provider")
    @classmethod
    def _canon(cls, v: str | None, info: ValidationInfo) -> str | None:  # the router canonicalizes
        return v

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_shape(cls, v: Any) -> Any:
        if v is not None and not isinstance(v, (str, list)):
            raise ValueError(f"must be a string or a list of strings, got {type(v).__name__}")
        return v

    @field_validator("max_tokens", "seed", mode="before")
    @classmethod
    def _integral(cls, v: Any) -> Any:
        return int(v) if isinstance(v, float) and v.is_integer() and abs(v) < 2**63 else v

    @model_validator(mode="after")
    def _no_routing_in_options(self) -> RequestOptions:  # overrides Options': a request may name them
        return self


KNOWN = frozenset(RequestOptions.model_fields)


def _problem(exc: ValidationError, where: str) -> InvalidRequestError:
    errors = exc.errors()
    described = []
    for err in errors:
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        described.append(f"{where}{loc}: {str(err['msg']).removeprefix('Value error, ')}")
    first = errors[0]["loc"] if errors else ()
    param = f"{where}.{first[0]}" if first else where
    return InvalidRequestError("; ".join(described) or f"{where} is invalid", param=param)


def _plain(raw: Mapping[str, Any]) -> bool:
    """Are the known keys of `raw` only `max_tokens` (an int), `temperature` and `top_p` (floats), in range, or
    null? RequestOptions would answer them unchanged; checked here instead (~3k instructions where its validation
    took ~18k, callgrind, the `an` front's `{"max_tokens": 64}`). Anything else it validates."""
    for key, value in raw.items():
        if value is None or key not in KNOWN:
            continue
        if key == "max_tokens":
            if type(value) is not int or not 0 < value <= MAX_TOKENS_LIMIT:
                return False
        elif key == "temperature":
            if type(value) is not float or not 0 <= value <= 2:
                return False
        elif key != "top_p" or type(value) is not float or not 0 <= value <= 1:
            return False
    return True


def request_options(raw: Any, where: str = "options") -> dict[str, Any]:
    """`raw` checked and normalized: known keys typed (`stop` always a list), null kept as "not set", unknown
    keys as given. Raises InvalidRequestError(param=`options.<field>`) on the first bad field."""
    if raw is None:
        return {}
    if type(raw) is not dict and not isinstance(raw, Mapping):  # (a dict first: the ABC check costs ~2.5k)
        raise InvalidRequestError(f"{where} must be an object, got {type(raw).__name__}", param=where)
    if not KNOWN.intersection(raw) or _plain(raw):
        return dict(raw)  # the hot path: nothing Rhetor interprets, or only well-typed sampling values
    try:
        parsed = RequestOptions.model_validate(dict(raw))
    except ValidationError as exc:
        raise _problem(exc, where) from None
    return {k: getattr(parsed, k) if k in KNOWN else v for k, v in raw.items()}


__all__ = ["KNOWN", "RequestOptions", "request_options"]
