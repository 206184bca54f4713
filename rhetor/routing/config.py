"""The tasks.json schema: which provider/model chain serves each task type, component or component_task.

Validated once at start (pydantic, `extra="forbid"` on entries), with messages naming the file and the bad
key path. Loading the file is `load_config`; everything else here is pure. Knows provider *names* (through
the registry's `canonical`), never provider classes, models lists, HTTP or request handling.

Two entry forms are accepted, and may be mixed in one file:

    original  {"provider": "anthropic", "model": "...", "options": {"fallback_provider": "openai", ...}}
    extended  {"targets": [{"provider": "anthropic", "model": "...", "timeout_s": 60, "retries": 2}, ...],
               "options": {...}, "simulated_fallback": true}
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rhetor.errors import ConfigError, UnknownProviderError
from rhetor.providers import REGISTRY, canonical

DEFAULT_RETRIES = 2
SIMULATED = "simulated"
ROUTING_OPTION_KEYS = frozenset({"provider", "model", "fallback_provider", "fallback_model"})
SHIPPED = "rhetor/config/tasks.json"
MAX_TOKENS_LIMIT = 2**31 - 1  # no model answers more; larger values only break a vendor's JSON encoder

StrictFloat = Annotated[float, Strict()]
StrictInt = Annotated[int, Strict()]


def _provider_name(value: str, info: ValidationInfo | None = None) -> str:
    """A provider name or alias (canonical), or a deployment of the providers file (passed as validation
    context {"deployments": {name: kind}} by parse_config) kept as written."""
    deployments = (info.context or {}).get("deployments") if info is not None else None
    if deployments and value in deployments:
        return value
    try:
        return canonical(value)
    except UnknownProviderError as exc:
        if deployments:
            raise ValueError(f"unknown provider or deployment {value!r}; valid: "
                             f"{', '.join([*deployments, *REGISTRY])}") from None
        raise ValueError(exc.message) from None


class TargetSpec(BaseModel):
    """One configured step of a chain. `model=None` means the provider's default model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Annotated[str, Strict()]
    model: Annotated[str, Strict(), Field(min_length=1)] | None = None
    timeout_s: Annotated[StrictFloat, Field(gt=0)] | None = None
    retries: Annotated[StrictInt, Field(ge=0)] = DEFAULT_RETRIES

    @field_validator("provider")
    @classmethod
    def _canon(cls, v: str, info: ValidationInfo) -> str:
        return _provider_name(v, info)


class Options(BaseModel):
    """Sampling options. Known keys are type-checked; unknown keys pass through (R1 options were open)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    temperature: Annotated[StrictFloat, Field(ge=0, le=2)] | None = None
    max_tokens: Annotated[StrictInt, Field(gt=0, le=MAX_TOKENS_LIMIT)] | None = None
    top_p: Annotated[StrictFloat, Field(ge=0, le=1)] | None = None
    stop: list[Annotated[str, Strict()]] | None = None
    seed: Annotated[StrictInt, Field(ge=-(2**63), lt=2**63)] | None = None  # vendors take a signed 64-bit seed
    fallback_provider: Annotated[str, Strict()] | None = None
    fallback_model: Annotated[str, Strict(), Field(min_length=1)] | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("fallback_provider")
    @classmethod
    def _canon(cls, v: str | None, info: ValidationInfo) -> str | None:
        return None if v is None else _provider_name(v, info)

    @model_validator(mode="after")
    def _no_routing_in_options(self) -> Options:
        for key in ("provider", "model"):
            if key in (self.model_extra or {}):
                raise ValueError(f"{key!r} belongs on the entry (or in a target), not in options")
        return self

    def sampling(self) -> dict[str, Any]:
        """The options a request carries: everything set, minus the routing keys."""
        return {k: v for k, v in self.model_dump(exclude_none=True).items() if k not in ROUTING_OPTION_KEYS}


class TaskEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Annotated[str, Strict()] | None = None
    model: Annotated[str, Strict(), Field(min_length=1)] | None = None
    targets: tuple[TargetSpec, ...] | None = None
    options: Options = Field(default_factory=Options)
    simulated_fallback: Annotated[bool, Strict()] = True
    description: Annotated[str, Strict()] | None = None
    cache: Annotated[bool, Strict()] = False  # answers of this route go through the response cache (opt-in)
    # how to pick among deployments serving one model (rhetor.routing.balance); None = the providers file's
    balance: Literal["weighted", "least-inflight", "latency", "cost"] | None = None

    @field_validator("provider")
    @classmethod
    def _canon(cls, v: str | None, info: ValidationInfo) -> str | None:
        return None if v is None else _provider_name(v, info)

    @model_validator(mode="after")
    def _one_form(self) -> TaskEntry:
        if self.targets is not None:
            if self.provider is not None or self.model is not None:
                raise ValueError("use either 'provider'/'model' or 'targets', not both")
            if not self.targets:
                raise ValueError("'targets' must list at least one target")
        elif self.provider is None:
            raise ValueError("an entry needs 'provider' (original form) or 'targets' (extended form)")
        return self

    def chain(self) -> tuple[TargetSpec, ...]:
        """The configured targets in order: the primary (or `targets`), then options.fallback_* if set."""
        if self.targets is not None:
            specs = list(self.targets)
        else:
            assert self.provider is not None  # guaranteed by _one_form
            specs = [TargetSpec.model_construct(provider=self.provider, model=self.model)]  # validated above
        fb_provider, fb_model = self.options.fallback_provider, self.options.fallback_model
        if fb_provider is not None or fb_model is not None:
            specs.append(TargetSpec.model_construct(provider=fb_provider or specs[0].provider, model=fb_model))
        return tuple(specs)


class TaskConfig(RootModel[dict[str, TaskEntry]]):
    """key -> entry. Keys are lower-cased; a `default` key is required."""

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        out: dict[str, Any] = {}
        for raw_key, value in data.items():
            key = str(raw_key).strip().lower()
            if not key:
                raise ValueError(f"empty key {raw_key!r}")
            if key in out:
                raise ValueError(f"duplicate key {key!r} (keys are case-insensitive)")
            out[key] = value
        if "default" not in out:
            raise ValueError("default: required entry is missing (it serves requests no other key matches)")
        return out

    def __contains__(self, key: object) -> bool:
        return key in self.root

    def __getitem__(self, key: str) -> TaskEntry:
        return self.root[key]

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        return iter(self.root)

    def keys(self) -> list[str]:
        return list(self.root)


def _format(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        problems.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(problems)


def parse_config(data: Any, source: str = "tasks.json", deployments: Mapping[str, str] | None = None) -> TaskConfig:
    """Validate already-parsed JSON data; errors -> ConfigError naming `source` and the key path. `deployments`
    (name -> kind, from the providers file) are names a route may use besides the providers'."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the top level must be an object mapping keys to entries")
    try:
        return TaskConfig.model_validate(data, context={"deployments": dict(deployments or {})})
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_format(exc)}") from None


def load_config(path: Path | None = None, deployments: Mapping[str, str] | None = None) -> TaskConfig:
    """Read and validate a tasks.json; None reads the shipped default (rhetor/config/tasks.json)."""
    source = SHIPPED if path is None else str(path)
    try:
        if path is None:
            text = resources.files("rhetor").joinpath("config/tasks.json").read_text(encoding="utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ConfigError(f"{source}: invalid JSON at {where}: {exc.msg}") from None
    return parse_config(data, source, deployments)


def resolve_model(provider: str, model: str | None, defaults: Mapping[str, str]) -> str:
    """The configured model, or the provider's default from `defaults`."""
    if model:
        return model
    try:
        return defaults[provider]
    except KeyError:
        raise ConfigError(f"no default model known for provider {provider!r}") from None


def describe(config: TaskConfig, defaults: Mapping[str, str]) -> str:
    """A human-readable table of every key, its resolved target chain and its options."""
    rows: list[tuple[str, str, str]] = []
    for key in sorted(config.keys(), key=lambda k: (k != "default", k)):
        entry = config[key]
        steps: list[str] = []
        seen: set[tuple[str, str]] = set()
        for spec in entry.chain():
            model = resolve_model(spec.provider, spec.model, defaults)
            if (spec.provider, model) in seen:
                continue
            seen.add((spec.provider, model))
            note = [] if spec.model else ["default model"]
            if spec.timeout_s is not None:
                note.append(f"timeout {spec.timeout_s:g}s")
            if spec.retries != DEFAULT_RETRIES:
                note.append(f"retries {spec.retries}")
            steps.append(f"{spec.provider}/{model}" + (f" ({', '.join(note)})" if note else ""))
        if entry.simulated_fallback and SIMULATED not in {p for p, _ in seen}:
            steps.append(f"{SIMULATED}/{resolve_model(SIMULATED, None, defaults)}")
        opts = " ".join(f"{k}={v}" for k, v in entry.options.sampling().items())
        rows.append((key, " -> ".join(steps), opts))
    width = max(len("key"), *(len(r[0]) for r in rows))
    lines = [f"{'key':<{width}}  chain  [options]"]
    lines += [f"{k:<{width}}  {chain}" + (f"  [{opts}]" if opts else "") for k, chain, opts in rows]
    return "\n".join(lines)


__all__ = [
    "DEFAULT_RETRIES",
    "ROUTING_OPTION_KEYS",
    "Options",
    "TargetSpec",
    "TaskConfig",
    "TaskEntry",
    "describe",
    "load_config",
    "parse_config",
    "resolve_model",
]
