"""The one exception tree. Every error knows its HTTP status, a stable `type` and whether it is `retryable`.

    RhetorError
    ├── ConfigError                      bad tasks.json / settings (not served)
    ├── InvalidRequestError       400    the caller's request cannot be served as asked
    │   ├── UnknownProviderError  400    lists the valid providers
    │   ├── UnknownModelError     400    lists the valid models
    │   ├── RetiredModelError     400    the catalogue lists the model as retired; names its successor
    │   ├── ModelNotFoundError    404    a compat-API model name that matches no form
    │   ├── ResponseNotFoundError 404    a Responses API id that is not stored (names the field that gave it)
    │   ├── TemplateSyntaxInvalid 400    a template's text does not compile (or uses include/import/extends)
    │   └── TemplateRenderError   400    rendering failed, or the sandbox refused (`type` says which)
    ├── AuthenticationError       401    keys are configured and the caller gave no valid (live) key
    ├── PermissionDeniedError     403    the caller's key may not use this route, provider or model
    ├── RateLimitedError          429    the caller's key or component is over its RPM/TPM limit
    ├── TemplateNotFoundError     404    no template (or version) by that id
    ├── TemplateConflictError     409    creating a template id that exists
    ├── PayloadTooLargeError      413
    ├── BudgetExceededError       429    a `block` budget is spent: names the budget, limit, spend and reset
    ├── UsageUnavailableError     503    the usage ledger is off, or its store cannot be read
    ├── StoreUnavailableError ⟲   503    a shared store (PostgreSQL) is unreachable: names its URL, no password
    ├── TemplateRendererBusy ⟲    503    every template render worker stayed busy past the queue wait
    ├── ProviderError                    a provider failed (carries provider and model)
    │   ├── ProviderUnavailableError     no key / not reachable: skipped at once, never retried
    │   ├── CircuitOpenError             breaker open: skipped at once
    │   │   ├── CoolingDownError         inside the upstream's Retry-After window: skipped at once
    │   │   └── DeploymentBusyError      a deployment's max_concurrency stayed full past its queue wait
    │   ├── UpstreamConnectError   ⟲     could not reach the upstream (connect refused, DNS)
    │   │   └── UpstreamTimeoutError ⟲   connect or read timed out
    │   ├── UpstreamStatusError   ⟲/✗    the upstream answered with an error status; retryable by status
    │   └── UpstreamProtocolError ⟲      the upstream answered with something we cannot parse, or cut the stream
    └── AllTargetsFailedError     502    every target in the chain failed; carries the attempts

"Could not reach" (connect, timeout) is kept apart from "answered with an error" (status). Fallback reads
`retryable`; nothing matches on message strings. Messages never contain API keys.
"""

from __future__ import annotations

from typing import Any

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 520, 522, 524, 529})


class RhetorError(Exception):
    status: int = 500
    type: str = "rhetor_error"
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message}


class ConfigError(RhetorError):
    type = "config_error"


class InvalidRequestError(RhetorError):
    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if self.param:
            d["param"] = self.param
        return d


class UnknownProviderError(InvalidRequestError):
    type = "unknown_provider"

    def __init__(self, provider: str, valid: list[str]) -> None:
        super().__init__(f"unknown provider {provider!r}; valid providers: {', '.join(valid)}", param="provider")


class UnknownModelError(InvalidRequestError):
    type = "unknown_model"

    def __init__(self, provider: str, model: str, valid: list[str]) -> None:
        super().__init__(
            f"unknown model {model!r} for provider {provider!r}; valid models: {', '.join(valid)}", param="model"
        )


class RetiredModelError(InvalidRequestError):
    type = "model_retired"

    def __init__(self, provider: str, model: str, successor: str, since: Any = None) -> None:
        when = f" on {since}" if since else ""
        super().__init__(f"model {model!r} of provider {provider!r} was retired{when}; use {successor!r} instead "
                         f"(for example model={provider}/{successor})", param="model")
        self.successor = successor


class ModelNotFoundError(InvalidRequestError):
    status = 404
    type = "model_not_found"

    def __init__(self, message: str) -> None:
        super().__init__(message, param="model")


class ResponseNotFoundError(InvalidRequestError):
    status = 404
    type = "not_found_error"


class TemplateSyntaxInvalid(InvalidRequestError):
    type = "template_syntax_error"

    def __init__(self, message: str, *, param: str = "text") -> None:
        super().__init__(message, param=param)


class TemplateRenderError(InvalidRequestError):
    type = "template_render_error"

    def __init__(self, message: str, *, error_type: str | None = None, param: str | None = "variables") -> None:
        super().__init__(message, param=param)
        if error_type:
            self.type = error_type


class TemplateNotFoundError(RhetorError):
    status = 404
    type = "not_found"


class TemplateConflictError(RhetorError):
    status = 409
    type = "conflict"


class AuthenticationError(RhetorError):
    status = 401
    type = "authentication_error"


class PermissionDeniedError(RhetorError):
    status = 403
    type = "permission_denied"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class RateLimitedError(RhetorError):
    status = 429
    type = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "retry_after": self.retry_after}


class PayloadTooLargeError(RhetorError):
    status = 413
    type = "payload_too_large"


class BudgetExceededError(RhetorError):
    """A `block` budget (rhetor.governance.budgets) is spent; refused before any upstream call."""

    status = 429
    type = "budget_exceeded"

    def __init__(self, message: str, **figures: Any) -> None:
        super().__init__(message)
        self.figures = figures  # budget, period, limit_usd|limit_tokens, spent_usd|spent_tokens, resets_at

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, **self.figures}


class UsageUnavailableError(RhetorError):
    status = 503
    type = "usage_unavailable"


class StoreUnavailableError(RhetorError):
    """A shared store (PostgreSQL, Redis) could not be reached; the message names its URL without the password."""

    status = 503
    type = "store_unavailable"
    retryable = True


class TemplateRendererBusy(RhetorError):
    """Every render worker stayed busy for longer than the queue wait: try again shortly."""

    status = 503
    type = "template_renderer_busy"
    retryable = True


class ProviderError(RhetorError):
    status = 502
    type = "provider_error"

    def __init__(self, message: str, *, provider: str = "", model: str = "") -> None:
        super().__init__(message)
        self.provider = provider
        self.model = model


class ProviderUnavailableError(ProviderError):
    type = "provider_unavailable"


class CircuitOpenError(ProviderError):
    type = "circuit_open"


class CoolingDownError(CircuitOpenError):
    type = "cooling_down"


class UpstreamConnectError(ProviderError):
    type = "upstream_unreachable"
    retryable = True


class UpstreamTimeoutError(UpstreamConnectError):
    type = "upstream_timeout"


class DeploymentBusyError(CircuitOpenError):
    type = "deployment_busy"


class UpstreamProtocolError(ProviderError):
    type = "upstream_protocol_error"
    retryable = True


class UpstreamStatusError(ProviderError):
    """The upstream answered with an error status. `upstream_type` is the vendor's own error type if any."""

    type = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        provider: str = "",
        model: str = "",
        retry_after: float | None = None,
        upstream_type: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, model=model)
        self.upstream_status = status
        self.retry_after = retry_after
        self.upstream_type = upstream_type
        self.retryable = status in RETRYABLE_STATUSES or upstream_type == "overloaded_error"

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["upstream_status"] = self.upstream_status
        if self.upstream_type:
            d["upstream_type"] = self.upstream_type
        return d


class AllTargetsFailedError(RhetorError):
    status = 502
    type = "all_targets_failed"

    def __init__(self, message: str, attempts: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.attempts = attempts

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "attempts": self.attempts}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After (or retry-after-ms) header value; None if absent or unparsable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


__all__ = [
    "RETRYABLE_STATUSES",
    "AllTargetsFailedError",
    "AuthenticationError",
    "BudgetExceededError",
    "CircuitOpenError",
    "ConfigError",
    "CoolingDownError",
    "DeploymentBusyError",
    "InvalidRequestError",
    "ModelNotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "ProviderError",
    "ProviderUnavailableError",
    "RateLimitedError",
    "ResponseNotFoundError",
    "RetiredModelError",
    "RhetorError",
    "StoreUnavailableError",
    "TemplateConflictError",
    "TemplateNotFoundError",
    "TemplateRenderError",
    "TemplateSyntaxInvalid",
    "UnknownModelError",
    "UnknownProviderError",
    "UpstreamConnectError",
    "UpstreamProtocolError",
    "UpstreamStatusError",
    "UpstreamTimeoutError",
    "UsageUnavailableError",
    "parse_retry_after",
]
