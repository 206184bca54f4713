"""One typed Settings object, read from the environment once at start and passed down explicitly.

No module globals: tests build their own `Settings(...)`. Knows nothing of providers' wire formats, of
FastAPI, or of routing rules — only names and defaults of knobs. API keys are `SecretStr` so they never
appear in a repr, a log line or a response.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0)
    simulated_delay_scale: float = Field(1.0, ge=0)

    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str = "https://api.anthropic.com"
    openai_api_key: SecretStr | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    ollama_host: str = DEFAULT_OLLAMA

    availability_ttl_s: float = Field(10.0, ge=0)
    upstream_timeout_s: float = Field(120.0, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0)
    max_retry_after_s: float = Field(60.0, ge=0)
    backoff_base_s: float = Field(0.5, ge=0)
    breaker_threshold: int = Field(5, ge=1)
    breaker_cooldown_s: float = Field(30.0, ge=0)

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
            "RHETOR_MAX_BODY_BYTES": "max_body_bytes",
            "RHETOR_SIMULATED_DELAY_SCALE": "simulated_delay_scale",
            "RHETOR_AVAILABILITY_TTL_S": "availability_ttl_s",
            "RHETOR_UPSTREAM_TIMEOUT_S": "upstream_timeout_s",
            "RHETOR_CONNECT_TIMEOUT_S": "connect_timeout_s",
            "RHETOR_MAX_RETRY_AFTER_S": "max_retry_after_s",
            "RHETOR_BACKOFF_BASE_S": "backoff_base_s",
            "RHETOR_BREAKER_THRESHOLD": "breaker_threshold",
            "RHETOR_BREAKER_COOLDOWN_S": "breaker_cooldown_s",
            "ANTHROPIC_API_KEY": "anthropic_api_key",
            "ANTHROPIC_BASE_URL": "anthropic_base_url",
            "OPENAI_API_KEY": "openai_api_key",
            "OPENAI_BASE_URL": "openai_base_url",
        }
        for var, key in simple.items():
            if e.get(var):
                raw[key] = e[var]
        ollama = e.get("OLLAMA_HOST") or e.get("OLLAMA_API_BASE")
        if ollama:
            raw["ollama_host"] = ollama if "://" in ollama else f"http://{ollama}"
        raw.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" in raw:
            raw["data_dir"] = Path(str(raw["data_dir"])).expanduser()
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


__all__ = ["Settings"]
