"""The model catalogue, loaded once: the shipped `catalog.json` with RHETOR_CATALOG's entries merged over it,
and the questions Rhetor asks of it — a model's context window, its price, its lifecycle status, a provider's
default and listed models.

`admit` is the one lifecycle check: a retired model is refused (RetiredModelError, a 400 naming the successor);
a deprecated one is served and logged once per model. Unlisted models are neither: local servers and new
models pass untouched. Knows nothing of providers' wire formats, routing or HTTP.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rhetor.catalog.schema import CatalogFile, ModelEntry, ProviderEntry
from rhetor.errors import ConfigError, RetiredModelError

log = logging.getLogger("rhetor.catalog")
FALLBACK_CONTEXT_WINDOW = 128_000


class Catalog:
    def __init__(self, data: CatalogFile) -> None:
        self.as_of: date = data.as_of
        self.providers: dict[str, ProviderEntry] = dict(data.providers)
        self._index: dict[tuple[str, str], ModelEntry] = {
            (p, name): entry for p, pe in self.providers.items() for entry in pe.models for name in entry.names}
        self._warned: set[tuple[str, str]] = set()

    def entry(self, provider: str, model: str) -> ModelEntry | None:
        """The catalogue's entry for `model` (its id or an alias) at `provider`, or None if it is not listed."""
        return self._index.get((provider, model))

    def context_window(self, provider: str, model: str) -> int:
        entry = self._index.get((provider, model))
        if entry is not None and entry.context_window is not None:
            return entry.context_window
        pe = self.providers.get(provider)
        return pe.default_context_window if pe is not None else FALLBACK_CONTEXT_WINDOW

    def default_model(self, provider: str, fallback: str) -> str:
        pe = self.providers.get(provider)
        return pe.default_model if pe is not None else fallback

    def models(self, provider: str, *, kind: str = "chat", retired: bool = False) -> list[str]:
        """Listed model ids of `provider` (current first, then deprecated; retired only when asked)."""
        pe = self.providers.get(provider)
        entries = [e for e in (pe.models if pe else ()) if e.kind == kind and (retired or e.status != "retired")]
        return [e.id for e in sorted(entries, key=lambda e: e.status != "current")]

    def admit(self, provider: str, model: str) -> ModelEntry | None:
        """Raise RetiredModelError for a retired model; log a deprecated one once; return the entry if listed."""
        entry = self._index.get((provider, model))
        if entry is None or entry.status == "current":
            return entry
        if entry.status == "retired":
            raise RetiredModelError(provider, model, entry.successor or "", entry.shutdown)
        if (provider, model) not in self._warned:
            self._warned.add((provider, model))
            log.warning("model %s/%s is deprecated: %s announced its shutdown for %s; move to %s/%s", provider,
                        model, provider, entry.shutdown, provider, entry.successor)
        return entry

    def price_table(self) -> dict[str, dict[str, dict[str, Any]]]:
        """{provider: {model id or alias (or '*' for the provider's default price): price}} for the ledger."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for p, pe in self.providers.items():
            table = out.setdefault(p, {})
            for entry in pe.models:
                if entry.price is not None:
                    table.update({n: entry.price.model_dump(exclude_none=True) for n in entry.names})
            if pe.default_price is not None:
                table["*"] = pe.default_price.model_dump(exclude_none=True)
        return out


def _read(path: Path, where: str) -> Any:
    try:
        text = path.expanduser().read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            yaml: Any = importlib.import_module("yaml")  # optional: PyYAML, only for a YAML catalogue
        except ImportError:
            raise ConfigError(f"{where}: {path} is YAML but PyYAML is not installed; use JSON") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where}: {path} is not valid YAML: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: {path} is not valid JSON at line {exc.lineno} column {exc.colno}: "
                          f"{exc.msg}") from None


def merge(shipped: dict[str, Any], user: Any, where: str) -> dict[str, Any]:
    """`user` over `shipped`: provider fields replace, models replace by id or are added."""
    if not isinstance(user, dict):
        raise ConfigError(f"{where}: the top level must be an object with 'providers'")
    out = {**shipped, **{k: v for k, v in user.items() if k != "providers"}}
    providers = dict(shipped.get("providers", {}))
    user_providers = user.get("providers", {})
    if not isinstance(user_providers, dict):
        raise ConfigError(f"{where}: providers must be an object {{provider: {{...}}}}")
    for name, pe in user_providers.items():
        if not isinstance(pe, dict):
            raise ConfigError(f"{where}: providers.{name} must be an object")
        base = dict(providers.get(name, {}))
        models = {str(m.get("id")): m for m in base.get("models", []) if isinstance(m, dict)}
        for m in pe.get("models", []):
            models[str(m.get("id")) if isinstance(m, dict) else repr(m)] = m
        base.update({k: v for k, v in pe.items() if k != "models"})
        base["models"] = list(models.values())
        providers[name] = base
    out["providers"] = providers
    return out


def _path(loc: tuple[Any, ...], data: Any) -> str:
    """A pydantic error location as a key path, naming models by id (`providers.openai.models[gpt-4o].price`)."""
    parts: list[str] = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(part, int) and i and loc[i - 1] == "models" and isinstance(node, list) and part < len(node):
            node = node[part]
            parts[-1] += f"[{node.get('id') if isinstance(node, dict) else part}]"
            continue
        node = node.get(part) if isinstance(node, dict) else None
        parts.append(str(part))
    return ".".join(parts)


def parse(data: Any, where: str) -> Catalog:
    try:
        return Catalog(CatalogFile.model_validate(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{where}: {_path(tuple(err['loc']), data)}: {msg}") from None


@functools.lru_cache(maxsize=8)
def load_catalog(user_file: Path | None = None) -> Catalog:
    """The shipped catalogue, with `user_file` (RHETOR_CATALOG, JSON or YAML) merged over it. Read afresh on
    every call (~0.15 ms; a handful of calls at start-up), so a reload sees an edited file."""
    shipped = json.loads(resources.files("rhetor.catalog").joinpath("catalog.json").read_text("utf-8"))
    if user_file is None:
        return parse(shipped, "catalog.json")
    where = f"RHETOR_CATALOG ({user_file})"
    return parse(merge(shipped, _read(Path(user_file), "RHETOR_CATALOG"), where), where)


__all__ = ["Catalog", "load_catalog", "merge", "parse"]
