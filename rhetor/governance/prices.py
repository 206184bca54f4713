"""The price table: USD per million tokens per provider/model, read from the model catalogue (rhetor.catalog, the
one source of list prices; RHETOR_CATALOG extends it) and overridable by a user file (RHETOR_PRICES, shape
{provider: {model: price}}, merged entry by entry over the catalogue's).

A model matches its entry exactly, or with a version suffix stripped (`-latest`, `-2024-08-06`, `-20241022`,
`-0125`); a provider's `*` entry prices every other model of it (local and simulated models cost 0). Anything
else is *unpriced*: it costs 0 and says so — a price is never guessed from a similar name. Knows nothing of
HTTP, the ledger's storage or providers' wire formats.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rhetor.catalog import load_catalog
from rhetor.errors import ConfigError
from rhetor.types import Usage

_SUFFIX = re.compile(r"-(latest|\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$")
PER = 1_000_000


class Price(BaseModel):
    """USD per million tokens. `cached_input` defaults to `input`, `cache_write` to `input` when absent."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(None, ge=0)
    cache_write: float | None = Field(None, ge=0)


@dataclass(frozen=True, slots=True)
class Cost:
    usd: float
    priced: bool  # False: no entry for this provider/model; usd is 0 and the ledger marks it `unpriced`


Rates = tuple[float, float, float, float]


class PriceTable:
    def __init__(self, entries: dict[str, dict[str, Price]]) -> None:
        self.entries = entries
        # (provider, model) -> (its Price, its rates), bounded by the models actually used; emptied by a reload
        # (rhetor.config.reload.swap_prices). The rates (input, output, cached input, cache write: per million
        # tokens, the last two falling back to input) are plain floats: a pydantic model's attribute costs a
        # `__getattr__` hook's detour each, four a request (callgrind, benchmarks/instructions.py)
        self._memo: dict[tuple[str, str], tuple[Price | None, Rates | None]] = {}

    def _found(self, provider: str, model: str) -> tuple[Price | None, Rates | None]:
        models = self.entries.get(provider, {})
        price = models.get(model) or models.get(_SUFFIX.sub("", model)) or models.get("*")
        found = (price, None if price is None else (
            price.input, price.output, price.input if price.cached_input is None else price.cached_input,
            price.input if price.cache_write is None else price.cache_write))
        if len(self._memo) < 4096:
            self._memo[(provider, model)] = found
        return found

    def lookup(self, provider: str, model: str) -> Price | None:
        return (self._memo.get((provider, model)) or self._found(provider, model))[0]

    def usd(self, provider: str, model: str, usage: Usage) -> float | None:
        """`cost(...).usd`, or None when unpriced: the meter's call, no Cost built."""
        rates = (self._memo.get((provider, model)) or self._found(provider, model))[1]
        if rates is None:
            return None
        cached, written = usage.cached_input_tokens, usage.cache_write_tokens
        if not cached and not written:  # the usual answer: the cache terms are 0 * rate, adding nothing
            return (usage.input_tokens * rates[0] + usage.output_tokens * rates[1]) / PER
        inp = usage.input_tokens
        cached = min(cached, inp)
        written = min(written, inp - cached)
        return ((inp - cached - written) * rates[0] + usage.output_tokens * rates[1] + cached * rates[2]
                + written * rates[3]) / PER

    def cost(self, provider: str, model: str, usage: Usage) -> Cost:
        usd = self.usd(provider, model, usage)
        return Cost(0.0, False) if usd is None else Cost(usd, True)

    def as_dict(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {p: {m: price.model_dump(exclude_none=True) for m, price in models.items()}
                for p, models in self.entries.items()}


def _parse(data: Any, where: str) -> dict[str, dict[str, Price]]:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a JSON object {{provider: {{model: price}}}} is required")
    out: dict[str, dict[str, Price]] = {}
    for provider, models in data.items():
        if provider.startswith("_"):
            continue  # comments
        if not isinstance(models, dict):
            raise ConfigError(f"{where}: {provider} must be an object {{model: price}}")
        out[provider] = {}
        for model, raw in models.items():
            try:
                out[provider][model] = Price.model_validate(raw)
            except ValidationError as exc:
                err = exc.errors()[0]
                field = ".".join(str(p) for p in err["loc"])
                raise ConfigError(f"{where}: {provider}.{model}{'.' + field if field else ''}: {err['msg']}") from None
    return out


def load_prices(user_file: Path | None = None, catalog_file: Path | None = None) -> PriceTable:
    """The catalogue's prices, with `user_file`'s entries (if given) replacing or adding models."""
    shipped = _parse(load_catalog(catalog_file).price_table(), "catalog")
    if user_file is not None:
        try:
            data = json.loads(Path(user_file).expanduser().read_text("utf-8"))
        except OSError as exc:
            raise ConfigError(f"RHETOR_PRICES: cannot read {user_file}: {exc.strerror or exc}") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"RHETOR_PRICES: {user_file} is not valid JSON: {exc.msg}") from None
        for provider, models in _parse(data, "RHETOR_PRICES").items():
            shipped.setdefault(provider, {}).update(models)
    return PriceTable(shipped)


__all__ = ["Cost", "Price", "PriceTable", "load_prices"]
