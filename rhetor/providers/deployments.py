"""The providers file (RHETOR_PROVIDERS, YAML or JSON): named deployments, each a configured instance of a
provider kind, validated once at start with errors naming the key path.

    strategy: least-inflight            # the default balancing strategy (a tasks.json entry may set its own)
    deployments:
      - {name: openai-a, kind: openai, api_keys: [sk-1, sk-2], models: [gpt-5.4], weight: 3}
      - {name: groq, kind: openai, preset: groq}                   # key from GROQ_API_KEY
      - {name: vllm-box, kind: openai, preset: vllm, base_url: http://10.0.0.5:8000/v1, models: discover}
      - {name: claude-eu, kind: anthropic, api_key_env: ANTHROPIC_EU_KEY, region: eu, max_concurrency: 8}

Keys are SecretStr from the moment they are read and never printed. Pure apart from reading the file and
the environment (for `api_key_env` and presets' key variables). Knows provider kinds and presets, never
provider classes, routing or HTTP.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, Strict, ValidationError, field_validator

from rhetor.errors import ConfigError
from rhetor.providers.presets import PRESETS, Preset, preset

Kind = Literal["openai", "anthropic", "ollama", "gemini", "simulated"]
Strategy = Literal["weighted", "least-inflight", "latency", "cost"]
STRATEGIES: tuple[str, ...] = ("weighted", "least-inflight", "latency", "cost")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
Str = Annotated[str, Strict()]


class PriceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    input: Annotated[float, Field(ge=0)]
    output: Annotated[float, Field(ge=0)]


class DeploymentFile(BaseModel):
    """One entry of `deployments`, as written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Str
    kind: Kind
    preset: Str | None = None
    base_url: Str | None = None
    api_key: Str | None = None
    api_keys: list[Str] | None = None
    api_key_env: Str | list[Str] | None = None
    models: list[Str] | Literal["discover"] | None = None
    headers: dict[str, Str] = Field(default_factory=dict)
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    max_concurrency: Annotated[int, Field(ge=1)] | None = None
    queue_s: Annotated[float, Field(ge=0, le=60)] = 0.25  # how long a call waits for a slot before moving on
    weight: Annotated[float, Field(gt=0)] = 1.0
    region: Str | None = None
    tags: list[Str] = Field(default_factory=list)
    prices: PriceSpec | None = None  # per 1M tokens; else the catalogue's price for kind/model

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.match(v) or "/" in v:
            raise ValueError("a name of letters, digits, '-', '_' or '.' (no '/'), at most 64 characters")
        return v

    @field_validator("preset")
    @classmethod
    def _preset(cls, v: str | None) -> str | None:
        if v is not None and preset(v) is None:
            raise ValueError(f"unknown preset {v!r}; valid presets: {', '.join(PRESETS)}")
        return v


class ProvidersFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    strategy: Strategy = "least-inflight"
    deployments: list[DeploymentFile]


@dataclass(frozen=True, slots=True)
class DeploymentSpec:
    """A validated, resolved deployment: what Providers builds an instance from."""

    name: str
    kind: str
    base_url: str | None
    keys: tuple[SecretStr, ...]
    models: tuple[str, ...] | None  # None = any model of its kind; () with discover = what the upstream lists
    discover: bool
    headers: dict[str, str]
    timeout_s: float | None
    max_concurrency: int | None
    queue_s: float
    weight: float
    region: str | None
    tags: tuple[str, ...]
    preset: Preset | None
    prices: tuple[float, float] | None
    path: str  # "deployments[i]", for messages naming the key path

    def serves(self, model: str) -> bool:
        return self.models is None or model in self.models


@dataclass(frozen=True, slots=True)
class Deployments:
    strategy: str
    specs: tuple[DeploymentSpec, ...]
    source: str

    def by_name(self) -> dict[str, DeploymentSpec]:
        return {s.name: s for s in self.specs}


def _format(exc: ValidationError, source: str) -> str:
    problems = []
    for err in exc.errors():
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        problems.append(f"{loc}: {str(err['msg']).removeprefix('Value error, ')}")
    return f"{source}: " + "; ".join(problems)


def _keys(d: DeploymentFile, pre: Preset | None, path: str, env: Mapping[str, str]) -> tuple[SecretStr, ...]:
    given = [k for k in ([d.api_key] if d.api_key else []) + (d.api_keys or []) if k]
    names = [d.api_key_env] if isinstance(d.api_key_env, str) else list(d.api_key_env or [])
    for var in names:
        value = env.get(var, "")
        if not value:
            raise ConfigError(f"{path}.api_key_env: {var} is not set")
        given += [k.strip() for k in value.split(",") if k.strip()]
    if not given and pre is not None and pre.key_env and env.get(pre.key_env):
        given = [k.strip() for k in env[pre.key_env].split(",") if k.strip()]
    if not given and pre is not None and not pre.local:
        raise ConfigError(f"{path}.api_key: preset {pre.name} needs a key (api_key, api_keys, api_key_env, or "
                          f"{pre.key_env} in the environment)")
    return tuple(SecretStr(k) for k in dict.fromkeys(given))


def _resolve(d: DeploymentFile, i: int, env: Mapping[str, str]) -> DeploymentSpec:
    path = f"deployments[{i}]"
    pre = preset(d.preset) if d.preset else None
    if pre is not None and d.kind != "openai":
        raise ConfigError(f"{path}.preset: {pre.name} is an OpenAI-compatible preset; kind must be openai")
    base = d.base_url or (pre.base_url if pre else None)
    if pre is not None and not base:
        raise ConfigError(f"{path}.base_url: preset {pre.name} needs the server's base_url")
    if base is not None and not base.startswith(("http://", "https://")):
        raise ConfigError(f"{path}.base_url: {base!r} is not an http(s) URL")
    discover = d.models == "discover" or (d.models is None and pre is not None and pre.discover)
    if isinstance(d.models, list):
        models: tuple[str, ...] | None = tuple(d.models)
    elif discover:
        models = ()
    else:
        models = pre.models if pre is not None and pre.models else None
    return DeploymentSpec(
        name=d.name, kind=d.kind, base_url=base, keys=_keys(d, pre, path, env), models=models, discover=discover,
        headers={**(pre.headers if pre else {}), **{k.lower(): v for k, v in d.headers.items()}},
        timeout_s=d.timeout_s, max_concurrency=d.max_concurrency, queue_s=d.queue_s, weight=d.weight,
        region=d.region, tags=tuple(d.tags), preset=pre,
        prices=(d.prices.input, d.prices.output) if d.prices else None, path=path)


def parse_deployments(data: Any, source: str = "providers file", env: Mapping[str, str] | None = None
                      ) -> Deployments:
    """Validate parsed data (a list of deployments or {strategy, deployments}); ConfigError naming the key path."""
    if isinstance(data, list):
        data = {"deployments": data}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be an object with 'deployments' (or a list of them)")
    try:
        parsed = ProvidersFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format(exc, source)) from None
    seen: dict[str, int] = {}
    for i, d in enumerate(parsed.deployments):
        if d.name.lower() in seen:
            raise ConfigError(f"{source}: deployments[{i}].name: duplicate name {d.name!r} (also "
                              f"deployments[{seen[d.name.lower()]}])")
        seen[d.name.lower()] = i
    e = os.environ if env is None else env
    try:
        specs = tuple(_resolve(d, i, e) for i, d in enumerate(parsed.deployments))
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.message}") from None
    return Deployments(parsed.strategy, specs, source)


def load_deployments(path: Path, env: Mapping[str, str] | None = None) -> Deployments:
    source = str(path)
    try:
        text = path.expanduser().read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"RHETOR_PROVIDERS: cannot read {path}: {exc.strerror or exc}") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml  # type: ignore[import-untyped,unused-ignore]
        except ImportError:
            raise ConfigError(f"{source}: YAML needs PyYAML; write the file as JSON") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    return parse_deployments(data, source, env)


__all__ = ["STRATEGIES", "DeploymentSpec", "Deployments", "Strategy", "load_deployments", "parse_deployments"]
