"""The catalogue file's schema: per provider, its models with their limits, capabilities, list prices and
lifecycle status. Pydantic with `extra="forbid"`, so a misspelt key is refused with its path.

Pure data types; no I/O. Knows nothing of providers' wire formats, routing or HTTP.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Status = Literal["current", "deprecated", "retired"]
Modality = Literal["text", "image", "audio", "video"]
Tokens = Annotated[int, Field(gt=0)]


class Price(BaseModel):
    """USD per million tokens. `cached_input` (a cache read) and `cache_write` default to `input` when absent."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(None, ge=0)
    cache_write: float | None = Field(None, ge=0)


class ModelEntry(BaseModel):
    """One model. A retired model needs only its id, status and successor; the rest says what it can do."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1)
    aliases: tuple[str, ...] = ()
    kind: Literal["chat", "embedding"] = "chat"
    context_window: Tokens | None = None
    max_output: Tokens | None = None
    modalities: tuple[Modality, ...] = ("text",)
    tools: bool = False
    structured_output: bool = False
    price: Price | None = None  # None: unpriced (the ledger records 0 and says so), never guessed
    status: Status = "current"
    shutdown: date | None = None  # the vendor's announced shutdown date (deprecated) or the day it went (retired)
    successor: str | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _lifecycle(self) -> ModelEntry:
        if self.status == "deprecated" and self.shutdown is None:
            raise ValueError("a deprecated model needs its 'shutdown' date")
        if self.status != "current" and not self.successor:
            raise ValueError(f"a {self.status} model needs a 'successor'")
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return (self.id, *self.aliases)


class ProviderEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    default_model: str = Field(min_length=1)
    default_context_window: Tokens = 128_000  # for models the catalogue does not list (or lists without one)
    default_price: Price | None = None  # prices every unlisted model (local and simulated models cost 0)
    models: tuple[ModelEntry, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> ProviderEntry:
        seen: dict[str, str] = {}
        for entry in self.models:
            for name in entry.names:
                if name in seen:
                    raise ValueError(f"models[{entry.id}]: {name!r} is already listed by {seen[name]!r}")
                seen[name] = entry.id
        by_name = {n: e for e in self.models for n in e.names}
        for entry in self.models:
            if entry.successor is not None:
                succ = by_name.get(entry.successor)
                if succ is None or succ.status == "retired":
                    raise ValueError(f"models[{entry.id}].successor: {entry.successor!r} is not a listed model "
                                     "that is still served")
        default = by_name.get(self.default_model)
        if default is not None and default.status != "current":
            raise ValueError(f"default_model: {self.default_model!r} is {default.status}; use a current model")
        return self


class CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    comment: str | None = Field(None, alias="_comment")
    as_of: date
    providers: dict[str, ProviderEntry]


__all__ = ["CatalogFile", "Modality", "ModelEntry", "Price", "ProviderEntry", "Status"]
