"""One typed Settings object, read from the environment once at start and passed down explicitly.

No module globals: tests build their own `Settings(...)`. Knows nothing of providers' wire formats, of
FastAPI, or of routing rules — only names and defaults of knobs. API keys are `SecretStr` so they never
appear in a repr, a log line or a response.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from rhetor.errors import ConfigError

DEFAULT_OLLAMA = "http://localhost:11434"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8003, ge=0, le=65535)
    log_level: str = "info"
    data_dir: Path = Path("~/.tekton/data/rhetor").expanduser()
    task_config: Path | None = None
    shutdown_grace_s: float = Field(10.0, ge=0)
    # `--workers N` / RHETOR_WORKERS: N serving processes on one port under one supervisor (rhetor/workers.py)
    workers: int = Field(1, ge=1, le=64)
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0)
    # Connection guards (rhetor/api/protocols.py): an unfinished request head or a stalled body is closed, and
    # connections beyond the cap get 503; per WebSocket, at most this many requests run at once.
    header_timeout_s: float = Field(10.0, gt=0)
    body_idle_timeout_s: float = Field(30.0, gt=0)
    max_connections: int = Field(1024, ge=1)
    ws_max_inflight: int = Field(64, ge=1)
    simulated_delay_scale: float = Field(1.0, ge=0)

    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str = "https://api.anthropic.com"
    openai_api_key: SecretStr | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    ollama_host: str = DEFAULT_OLLAMA
    gemini_api_key: SecretStr | None = None  # GEMINI_API_KEY, else GOOGLE_API_KEY
    gemini_base_url: str = "https://generativelanguage.googleapis.com"
    catalog_file: Path | None = None  # RHETOR_CATALOG: a JSON/YAML catalogue merged over the shipped one
    # RHETOR_PROVIDERS: a YAML/JSON file of named deployments (rhetor/providers/deployments.py); RHETOR_BALANCE: the
    # strategy among deployments serving one model when neither the file nor the route sets one
    providers_file: Path | None = None
    balance: Literal["weighted", "least-inflight", "latency", "cost"] | None = None

    availability_ttl_s: float = Field(10.0, ge=0)
    # the live model listings of /v1/models and /api/v1/models (rhetor.providers.listing): cache and fetch bound
    models_cache_s: float = Field(300.0, ge=0)
    models_discovery_timeout_s: float = Field(3.0, gt=0)
    upstream_timeout_s: float = Field(120.0, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0)
    max_retry_after_s: float = Field(60.0, ge=0)
    backoff_base_s: float = Field(0.5, ge=0)
    breaker_threshold: int = Field(5, ge=1)
    breaker_cooldown_s: float = Field(30.0, ge=0)
    # Item 6: a wait longer than this moves on to the next target (if one can serve) instead of sleeping;
    # the breaker also opens on a failure rate over a short window (rhetor/routing/breaker.py).
    max_retry_wait_s: float = Field(2.0, ge=0)
    breaker_window_s: float = Field(10.0, gt=0)
    breaker_failure_rate: float = Field(0.5, gt=0, le=1)
    breaker_min_calls: int = Field(20, ge=1)

    # Semantic memory (rhetor/context/embedder.py): auto = local if the `local` extra is installed, else none
    # (retrieval then uses lexical search).
    embedder: Literal["auto", "local", "openai", "ollama", "simulated", "none"] = "auto"
    embedding_model: str | None = None
    index_interval_s: float = Field(2.0, gt=0)  # how often the indexer looks for messages other processes wrote
    retrieval_k: int = Field(4, ge=0, le=64)  # older turns brought back at most, per request
    vector_cache_mb: int = Field(16, ge=1)  # per-context vector scopes in memory (int8), LRU (rhetor.context.vectors)
    # How the local model runs: numpy (default, no PyTorch) or torch (sentence-transformers, the `torch` extra).
    local_runtime: Literal["numpy", "torch"] = "numpy"

    # Templates (rhetor/prompts/pool.py): user template text renders in worker processes, each render under a
    # wall-clock and a memory budget; a render over either is stopped and answered 400 template_sandbox_violation.
    template_timeout_s: float = Field(1.0, gt=0, le=60)
    template_memory_mb: int = Field(256, ge=32, le=65536)
    template_workers: int = Field(2, ge=1, le=64)

    # Tekton integration. Hermes is off unless `hermes_url` is set (from_env sets it), so a bare Settings()
    # — every test — never reaches for a Hermes on localhost:8001.
    hermes_enabled: bool = True
    hermes_url: str | None = None
    hermes_heartbeat_s: float = Field(30.0, gt=0)
    hermes_retry_max_s: float = Field(60.0, gt=0)
    hermes_check_s: float = Field(60.0, gt=0)  # how often Hermes' listing is checked for our entry
    hermes_component_id: str = Field("rhetor", min_length=1)  # stable id: re-registering updates the entry
    advertise_host: str | None = None  # host put in the Hermes endpoint; default: the bind host
    engram_url: str | None = None
    engram_api_key: SecretStr | None = None
    engram_timeout_s: float = Field(5.0, gt=0)
    engram_queue_max: int = Field(1000, ge=1)
    shutdown_token: SecretStr | None = None
    # Proxies whose X-Forwarded-For/Forwarded headers are believed (IPs or CIDRs, "*" = any); empty = none
    trusted_proxies: tuple[str, ...] = ()
    run_dir: Path = Path("~/.tekton/run").expanduser()

    # OpenAI/Anthropic-compatible fronts: caller keys (empty = no auth) and model-name aliases
    api_keys: tuple[SecretStr, ...] = ()
    model_aliases: dict[str, str] = Field(default_factory=dict)
    # Lossless fronts (rhetor/providers/fidelity.py): RHETOR_LENIENT=1 drops (and lists) a field the chosen upstream
    # cannot honour instead of answering 400, as x-rhetor-lenient: 1 does per request; RHETOR_FORWARD_OPENAI_ORG=1
    # forwards the caller's openai-organization / openai-project headers to an OpenAI upstream
    lenient_fields: bool = False
    forward_openai_org: bool = False
    passthrough: bool = True  # RHETOR_PASSTHROUGH=0: same-vendor requests take the translated path (benchmarks)

    # Governance (rhetor/governance): the usage ledger in $RHETOR_DATA_DIR/usage.db, and the price table
    usage_ledger: bool = True  # RHETOR_USAGE_LEDGER=0 turns recording off (benchmarks measure both)
    fast_lane: bool = True  # RHETOR_FAST_LANE=0: every request through FastAPI's full stack (rhetor.api.fastlane)
    usage_retention_days: float = Field(90.0, ge=0)  # 0 = keep forever
    usage_flush_interval_s: float = Field(1.0, gt=0, le=60)  # at most this much is lost on kill -9
    usage_buffer_max: int = Field(100_000, ge=1)  # records held while the store is unavailable
    prices_file: Path | None = None  # RHETOR_PRICES: a JSON price file merged over the shipped one
    # Caller keys and rate limits (rhetor/governance/access.py): virtual keys in $RHETOR_DATA_DIR/keys.db, managed
    # through /api/v1/keys with RHETOR_ADMIN_KEY; per-component RPM/TPM limits {component: {rpm, tpm}}
    admin_key: SecretStr | None = None
    keys_poll_s: float = Field(0.5, gt=0, le=1)  # changes by other processes are seen within this (≤ 1 s)
    component_limits: dict[str, dict[str, int]] = Field(default_factory=dict)
    # Scale-out (rhetor/storage, docs/scale-out.md): contexts and caller keys on a shared PostgreSQL
    # (RHETOR_DATABASE_URL=postgresql://user:pw@host/db[?schema=name]); rate-limit windows on a shared Redis
    # (RHETOR_REDIS_URL=redis://host:6379/0, keys under redis_prefix). Unset: SQLite files and in-process state.
    # An engine unreachable at start exits 2 naming its URL (no password) unless degraded_start.
    database_url: SecretStr | None = None
    redis_url: SecretStr | None = None
    redis_prefix: str = Field("rhetor:", min_length=1, max_length=64)
    # with Redis, a budget reservation of a replica that died mid-request is freed after this (rhetor.storage)
    budget_hold_lease_s: float = Field(600.0, gt=0, le=86400)
    degraded_start: bool = False
    # Budgets (rhetor/governance/budgets.py): the original global budget from the environment (no limit set = none);
    # more budgets per component / key / task through /api/v1/budgets, kept in $RHETOR_DATA_DIR/budgets.db
    budget_policy: Literal["warn", "downgrade", "block", "enforce", "ignore"] = "warn"
    budget_daily_limit: float | None = Field(None, ge=0)
    budget_weekly_limit: float | None = Field(None, ge=0)
    budget_monthly_limit: float | None = Field(None, ge=0)
    budget_downgrade_to: str | None = None  # provider/model the downgrade (or enforce) policy routes to
    budget_warn_at: float = Field(0.8, gt=0, le=1)  # the soft warning threshold, a share of each limit
    # Response cache (rhetor/governance/cache.py): opt-in per route, key or request; bounded and expiring
    cache_ttl_s: float = Field(3600.0, gt=0)
    cache_max_mb: float = Field(64.0, ge=0)  # 0 = no response cache at all

    # Tracing (rhetor/observability/tracing.py): on when an OTLP endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT, or
    # ..._TRACES_ENDPOINT) or otel=True (RHETOR_OTEL=1); otel=False (RHETOR_OTEL=0) keeps it off. Off, no SDK loads.
    otel: bool | None = None
    otel_endpoint: str | None = None  # the OTLP/HTTP traces URL (…/v1/traces)
    otel_exporter: Literal["otlp", "console", "none"] = "otlp"  # OTEL_TRACES_EXPORTER
    otel_capture_content: bool = False  # RHETOR_OTEL_CAPTURE_CONTENT=1: prompts and completions on spans
    # Observability (rhetor/observability): Prometheus at /metrics (RHETOR_METRICS=0 turns it off; the token opens
    # it to a scraper without a caller key), caller key names as a label only when asked, the log format
    # (auto = JSON when stderr is not a terminal) and the one access line per request (RHETOR_ACCESS_LOG=0: none)
    metrics: bool = True
    metrics_token: SecretStr | None = None
    metrics_key_label: bool = False
    log_format: Literal["auto", "json", "text"] = "auto"
    access_log: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build from RHETOR_* and the vendors' own variables; `overrides` (CLI flags) win."""
        e = os.environ if env is None else env
        raw: dict[str, Any] = {}
        simple = {
            "RHETOR_HOST": "host",
            "RHETOR_PORT": "port",
            "RHETOR_LOG_LEVEL": "log_level",
            "RHETOR_DATA_DIR": "data_dir",
            "RHETOR_TASK_CONFIG": "task_config",
            "RHETOR_SHUTDOWN_GRACE_S": "shutdown_grace_s",
            "RHETOR_WORKERS": "workers",
            "RHETOR_MAX_BODY_BYTES": "max_body_bytes",
            "RHETOR_HEADER_TIMEOUT_S": "header_timeout_s",
            "RHETOR_BODY_IDLE_TIMEOUT_S": "body_idle_timeout_s",
            "RHETOR_MAX_CONNECTIONS": "max_connections",
            "RHETOR_WS_MAX_INFLIGHT": "ws_max_inflight",
            "RHETOR_SIMULATED_DELAY_SCALE": "simulated_delay_scale",
            "RHETOR_AVAILABILITY_TTL_S": "availability_ttl_s",
            "RHETOR_MODELS_CACHE_S": "models_cache_s",
            "RHETOR_MODELS_DISCOVERY_TIMEOUT_S": "models_discovery_timeout_s",
            "RHETOR_UPSTREAM_TIMEOUT_S": "upstream_timeout_s",
            "RHETOR_CONNECT_TIMEOUT_S": "connect_timeout_s",
            "RHETOR_MAX_RETRY_AFTER_S": "max_retry_after_s",
            "RHETOR_BACKOFF_BASE_S": "backoff_base_s",
            "RHETOR_BREAKER_THRESHOLD": "breaker_threshold",
            "RHETOR_BREAKER_COOLDOWN_S": "breaker_cooldown_s",
            "RHETOR_MAX_RETRY_WAIT_S": "max_retry_wait_s",
            "RHETOR_BREAKER_WINDOW_S": "breaker_window_s",
            "RHETOR_BREAKER_FAILURE_RATE": "breaker_failure_rate",
            "RHETOR_BREAKER_MIN_CALLS": "breaker_min_calls",
            "RHETOR_EMBEDDER": "embedder",
            "RHETOR_EMBEDDING_MODEL": "embedding_model",
            "RHETOR_LOCAL_RUNTIME": "local_runtime",
            "RHETOR_INDEX_INTERVAL_S": "index_interval_s",
            "RHETOR_RETRIEVAL_K": "retrieval_k",
            "RHETOR_VECTOR_CACHE_MB": "vector_cache_mb",
            "RHETOR_TEMPLATE_TIMEOUT_S": "template_timeout_s",
            "RHETOR_TEMPLATE_MEMORY_MB": "template_memory_mb",
            "RHETOR_TEMPLATE_WORKERS": "template_workers",
            "ANTHROPIC_API_KEY": "anthropic_api_key",
            "ANTHROPIC_BASE_URL": "anthropic_base_url",
            "OPENAI_API_KEY": "openai_api_key",
            "OPENAI_BASE_URL": "openai_base_url",
            "GEMINI_BASE_URL": "gemini_base_url",
            "RHETOR_CATALOG": "catalog_file",
            "RHETOR_PROVIDERS": "providers_file",
            "RHETOR_BALANCE": "balance",
            "RHETOR_HERMES": "hermes_enabled",
            "RHETOR_HERMES_HEARTBEAT_S": "hermes_heartbeat_s",
            "RHETOR_HERMES_RETRY_MAX_S": "hermes_retry_max_s",
            "RHETOR_HERMES_CHECK_S": "hermes_check_s",
            "RHETOR_HERMES_COMPONENT_ID": "hermes_component_id",
            "RHETOR_ADVERTISE_HOST": "advertise_host",
            "ENGRAM_URL": "engram_url",
            "ENGRAM_API_KEY": "engram_api_key",
            "RHETOR_ENGRAM_TIMEOUT_S": "engram_timeout_s",
            "RHETOR_ENGRAM_QUEUE_MAX": "engram_queue_max",
            "RHETOR_SHUTDOWN_TOKEN": "shutdown_token",
            "RHETOR_RUN_DIR": "run_dir",
            "RHETOR_USAGE_LEDGER": "usage_ledger",
            "RHETOR_FAST_LANE": "fast_lane",
            "RHETOR_USAGE_RETENTION_DAYS": "usage_retention_days",
            "RHETOR_USAGE_FLUSH_S": "usage_flush_interval_s",
            "RHETOR_USAGE_BUFFER_MAX": "usage_buffer_max",
            "RHETOR_PRICES": "prices_file",
            "RHETOR_ADMIN_KEY": "admin_key",
            "RHETOR_KEYS_POLL_S": "keys_poll_s",
            "RHETOR_DATABASE_URL": "database_url",
            "RHETOR_REDIS_URL": "redis_url",
            "RHETOR_REDIS_PREFIX": "redis_prefix",
            "RHETOR_BUDGET_HOLD_LEASE_S": "budget_hold_lease_s",
            "RHETOR_DEGRADED_START": "degraded_start",
            "RHETOR_BUDGET_POLICY": "budget_policy",
            "RHETOR_BUDGET_DAILY_LIMIT": "budget_daily_limit",
            "RHETOR_BUDGET_WEEKLY_LIMIT": "budget_weekly_limit",
            "RHETOR_BUDGET_MONTHLY_LIMIT": "budget_monthly_limit",
            "RHETOR_BUDGET_DOWNGRADE_TO": "budget_downgrade_to",
            "RHETOR_BUDGET_WARN_AT": "budget_warn_at",
            "RHETOR_CACHE_TTL_S": "cache_ttl_s",
            "RHETOR_CACHE_MAX_MB": "cache_max_mb",
            "RHETOR_OTEL": "otel",
            "RHETOR_OTEL_CAPTURE_CONTENT": "otel_capture_content",
            "OTEL_TRACES_EXPORTER": "otel_exporter",
            "RHETOR_METRICS": "metrics",
            "RHETOR_METRICS_TOKEN": "metrics_token",
            "RHETOR_METRICS_KEY_LABEL": "metrics_key_label",
            "RHETOR_LOG_FORMAT": "log_format",
            "RHETOR_ACCESS_LOG": "access_log",
            "RHETOR_LENIENT": "lenient_fields",
            "RHETOR_FORWARD_OPENAI_ORG": "forward_openai_org",
            "RHETOR_PASSTHROUGH": "passthrough",
        }
        for var, key in simple.items():
            if e.get(var):
                raw[key] = e[var]
        if "budget_policy" in raw:  # R1 spelled its policies in either case
            raw["budget_policy"] = str(raw["budget_policy"]).strip().lower()
        if e.get("GEMINI_API_KEY") or e.get("GOOGLE_API_KEY"):
            raw["gemini_api_key"] = e.get("GEMINI_API_KEY") or e.get("GOOGLE_API_KEY")
        ollama = e.get("OLLAMA_HOST") or e.get("OLLAMA_API_BASE")
        if ollama:
            raw["ollama_host"] = ollama if "://" in ollama else f"http://{ollama}"
        raw["hermes_url"] = e.get("HERMES_URL") or f"http://localhost:{e.get('HERMES_PORT') or 8001}"
        if e.get("RHETOR_ENGRAM_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            raw.pop("engram_url", None)
        if e.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):  # a signal's own endpoint is used as it is
            raw["otel_endpoint"] = e["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        elif e.get("OTEL_EXPORTER_OTLP_ENDPOINT"):  # the base endpoint gets the signal's path
            raw["otel_endpoint"] = e["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
        if e.get("OTEL_SDK_DISABLED", "").lower() == "true":
            raw["otel"] = False
        if e.get("RHETOR_TRUSTED_PROXIES"):
            raw["trusted_proxies"] = _trusted_proxies(e["RHETOR_TRUSTED_PROXIES"])
        if e.get("RHETOR_API_KEYS"):
            raw["api_keys"] = _api_keys(e["RHETOR_API_KEYS"])
        if e.get("RHETOR_MODEL_ALIASES"):
            raw["model_aliases"] = _aliases(e["RHETOR_MODEL_ALIASES"])
        if e.get("RHETOR_COMPONENT_LIMITS"):
            raw["component_limits"] = _component_limits(e["RHETOR_COMPONENT_LIMITS"])
        raw.update({k: v for k, v in overrides.items() if v is not None})
        for key in ("data_dir", "run_dir"):
            if key in raw:
                raw[key] = Path(str(raw[key])).expanduser()
        try:
            return cls(**raw)
        except ValidationError as exc:
            inverse = {v: k for k, v in simple.items()}
            problems = "; ".join(
                f"{inverse.get(str(err['loc'][0]), err['loc'][0])}: {err['msg']}" for err in exc.errors()
            )
            raise ConfigError(f"invalid settings: {problems}") from None

    @property
    def db_path(self) -> Path:
        return self.data_dir / "rhetor.db"

    @property
    def usage_db_path(self) -> Path:
        return self.data_dir / "usage.db"

    @property
    def keys_db_path(self) -> Path:
        return self.data_dir / "keys.db"


def _file_or_inline(value: str, var: str) -> str:
    """A value that starts like a path (/, ./, ~) is read from that file; anything else is the value itself."""
    if not value.startswith(("/", "./", "../", "~")):
        return value
    try:
        return Path(value).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{var}: cannot read {value}: {exc.strerror or exc}") from None


def _trusted_proxies(value: str) -> tuple[str, ...]:
    """Comma-separated IP addresses or networks (uvicorn would silently treat anything else as a literal)."""
    items = tuple(p.strip() for p in value.split(",") if p.strip())
    for item in items:
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False) if "/" in item else ipaddress.ip_address(item)
        except ValueError:
            raise ConfigError(f"RHETOR_TRUSTED_PROXIES: {item!r} is not an IP address, a network or '*'") from None
    return items


def _api_keys(value: str) -> tuple[SecretStr, ...]:
    """Keys separated by commas or newlines (a file may hold one per line; `#` starts a comment line)."""
    text = _file_or_inline(value.strip(), "RHETOR_API_KEYS")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    keys = [k.strip() for line in lines for k in line.split(",") if k.strip()]
    if not keys:
        raise ConfigError("RHETOR_API_KEYS: set but holds no key")
    return tuple(SecretStr(k) for k in dict.fromkeys(keys))


def _component_limits(value: str) -> dict[str, dict[str, int]]:
    """`{"ergon": {"rpm": 60, "tpm": 100000}, ...}` (inline or in a file): per-component rate limits."""
    text = _file_or_inline(value.strip(), "RHETOR_COMPONENT_LIMITS")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"RHETOR_COMPONENT_LIMITS: invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError("RHETOR_COMPONENT_LIMITS: a JSON object {component: {rpm, tpm}}")
    out: dict[str, dict[str, int]] = {}
    for component, limits in data.items():
        if not isinstance(limits, dict) or not limits:
            raise ConfigError(f"RHETOR_COMPONENT_LIMITS: {component}: an object with rpm and/or tpm")
        for name, n in limits.items():
            if name not in ("rpm", "tpm") or not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ConfigError(f"RHETOR_COMPONENT_LIMITS: {component}.{name}: rpm or tpm, a positive integer")
        out[str(component).lower()] = dict(limits)
    return out


def _aliases(value: str) -> dict[str, str]:
    """`alias=model,alias=model` or a JSON object {alias: model} (inline or in a file)."""
    text = _file_or_inline(value.strip(), "RHETOR_MODEL_ALIASES").strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"RHETOR_MODEL_ALIASES: invalid JSON: {exc.msg}") from None
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise ConfigError("RHETOR_MODEL_ALIASES: every alias and model must be a string")
        return dict(data)
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.replace("\n", ",").split(","))):
        alias, sep, model = item.partition("=")
        if not sep or not alias.strip() or not model.strip():
            raise ConfigError(f"RHETOR_MODEL_ALIASES: {item!r} is not alias=provider/model")
        out[alias.strip()] = model.strip()
    return out


__all__ = ["Settings"]
