"""The catalogue against the vendors' own SDKs in the test extra, so a stale catalogue fails CI when an SDK
update adds, deprecates or drops a model: anthropic's Model literal and its DEPRECATED_MODELS table, openai's
ChatModel literal and the "Deprecated values" table in its docstring, google-genai's Model literal.

Statuses are judged at the catalogue's `as_of` date (not today's), so the check is deterministic: a shutdown
date before it means retired, on or after it deprecated with that date."""

from __future__ import annotations

import re
import typing
from datetime import date, datetime
from typing import Any

import pytest

from rhetor.catalog import load_catalog


def literal_names(alias: Any) -> set[str]:
    """Every string in a (possibly nested, possibly Union-wrapped) Literal type."""
    out: set[str] = set()
    for arg in typing.get_args(alias):
        if isinstance(arg, str):
            out.add(arg)
        else:
            out |= literal_names(arg)
    return out


def expected(shutdown: date | None, as_of: date) -> str:
    return "current" if shutdown is None else "retired" if shutdown < as_of else "deprecated"


def check(provider: str, names: set[str], deprecations: dict[str, date | None]) -> list[str]:
    """Problems: SDK names missing from the catalogue or with the wrong status/date, and catalogue models still
    served that the SDK no longer lists."""
    catalog = load_catalog()
    problems = []
    for name in sorted(names | set(deprecations)):
        entry = catalog.entry(provider, name)
        if entry is None:
            problems.append(f"{provider}/{name}: in the SDK, missing from the catalogue")
            continue
        shutdown = deprecations.get(name)
        want = "retired" if name in deprecations and shutdown is None else expected(shutdown, catalog.as_of)
        if entry.status != want:
            problems.append(f"{provider}/{name}: catalogue says {entry.status}, the SDK says {want} ({shutdown})")
        elif want == "deprecated" and entry.shutdown != shutdown:
            problems.append(f"{provider}/{name}: shutdown {entry.shutdown} in the catalogue, {shutdown} in the SDK")
    for entry in catalog.providers[provider].models:
        if entry.kind == "chat" and entry.status != "retired" and not set(entry.names) & names:
            problems.append(f"{provider}/{entry.id}: served per the catalogue, but the SDK no longer lists it")
    return problems


def test_anthropic_catalogue_matches_the_sdk() -> None:
    from anthropic._data import DEPRECATED_MODELS
    from anthropic.types.model import Model

    dates = {name: datetime.strptime(re.sub(r"(\d)(st|nd|rd|th)", r"\1", when), "%B %d, %Y").date()
             for name, when in DEPRECATED_MODELS.items()}
    assert check("anthropic", literal_names(Model), dict(dates)) == []


def openai_deprecations(doc: str) -> dict[str, date | None]:
    """The ChatModel docstring's bullets: quoted names, then a shutdown date or "Not a supported model ID"."""
    out: dict[str, date | None] = {}
    for bullet in re.split(r"\n- ", doc.split("Deprecated values:", 1)[1]):
        names = re.findall(r'"([^"]+)"', bullet.split(":", 1)[0])
        when = re.search(r"shutdown\s+date:\s+(\d{4}-\d{2}-\d{2})", bullet)
        for name in names:
            out[name] = date.fromisoformat(when.group(1)) if when else None
    return out


def test_openai_catalogue_matches_the_sdk() -> None:
    import openai.types.shared.chat_model as chat_model

    source = open(chat_model.__file__, encoding="utf-8").read()
    doc = source.split('"""Deprecated values:', 1)[1]
    deprecations = openai_deprecations("Deprecated values:" + doc)
    assert deprecations["gpt-3.5-turbo"] == date(2026, 10, 23) and deprecations["gpt-5.1-mini"] is None
    assert check("openai", literal_names(chat_model.ChatModel), deprecations) == []


def test_gemini_catalogue_matches_the_sdk() -> None:
    model = pytest.importorskip("google.genai._gaos.types.interactions.model")
    names = {n for n in literal_names(model.Model) if n.startswith("gemini-")}
    catalog = load_catalog()
    served = {n for e in catalog.providers["gemini"].models if e.status != "retired" for n in e.names}
    text_models = {n for n in names if not re.search(r"(image|tts|transcribe|robotics|omni|banana|customtools)", n)}
    assert text_models - served == set(), "text models google-genai lists that the catalogue lacks"
    assert served - names == set(), "models the catalogue serves that google-genai no longer lists"


def test_the_staleness_check_catches_a_stale_catalogue() -> None:
    """The check itself: a model the SDK deprecated or dropped is reported."""
    problems = check("anthropic", {"claude-sonnet-5-5", "claude-brand-new"}, {"claude-haiku-4-5": date(2026, 1, 1)})
    assert "anthropic/claude-brand-new: in the SDK, missing from the catalogue" in problems
    assert any(p.startswith("anthropic/claude-haiku-4-5: catalogue says current, the SDK says retired")
               for p in problems)
    assert any(p.startswith("anthropic/claude-opus-5-5: served per the catalogue") for p in problems)
