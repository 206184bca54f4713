"""The model catalogue as data: the shipped file validates, RHETOR_CATALOG extends it and bad files are named by
key path; defaults and shipped routes are current; deprecated models run with one warning, retired ones are a
400 naming the successor (a legacy Tekton caller gets the successor); check-config refuses a retired route;
prices come from the catalogue; `python -m rhetor models` prints it."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from rhetor.catalog import load_catalog
from rhetor.errors import ConfigError, RetiredModelError
from rhetor.governance.prices import load_prices
from rhetor.providers import REGISTRY, Providers
from rhetor.routing.config import load_config, parse_config
from rhetor.routing.lifecycle import check_routes
from rhetor.settings import Settings
from rhetor.types import Usage


def test_shipped_catalogue_validates_and_answers() -> None:
    c = load_catalog()
    assert set(REGISTRY) <= set(c.providers)  # every registered provider has an entry
    sonnet = c.entry("anthropic", "claude-sonnet-5-5")
    assert sonnet is not None and sonnet.status == "current" and sonnet.context_window == 1_000_000
    assert sonnet.price is not None and (sonnet.price.input, sonnet.price.output) == (2, 10)
    alias = c.entry("anthropic", "claude-sonnet-4-5-20250929")
    assert alias is not None and alias.id == "claude-sonnet-4-5" and alias.status == "deprecated"
    assert c.context_window("openai", "gpt-5.4") == 1_050_000
    assert c.context_window("ollama", "llama3") == 8192  # unlisted: the provider's default window
    assert c.context_window("nobody", "x") == 128_000


def test_defaults_and_shipped_routes_name_current_models_only() -> None:
    c = load_catalog()
    defaults = Providers(Settings()).default_models()
    for provider, model in defaults.items():
        entry = c.entry(provider, model)
        assert entry is None or entry.status == "current", (provider, model)
    assert defaults["anthropic"] == "claude-sonnet-5-5"  # was claude-3-sonnet-20240229 (retired)
    config = load_config()
    assert check_routes(config, c) == []  # no retired and no deprecated model in the shipped tasks.json
    for key in config.keys():
        for spec in config[key].chain():
            entry = c.entry(spec.provider, spec.model or defaults[spec.provider])
            assert entry is None or entry.status == "current", (key, spec)


def test_check_config_refuses_a_retired_route_naming_the_key_path(tmp_path: Path) -> None:
    data = {"default": {"provider": "anthropic", "model": "claude-sonnet-5-5"},
            "chat": {"targets": [{"provider": "openai", "model": "gpt-5.4-mini"},
                                 {"provider": "anthropic", "model": "claude-3-sonnet-20240229"}]},
            "hermes": {"provider": "openai", "model": "gpt-4o"}}
    with pytest.raises(ConfigError, match=r"chat\.targets\[1\]\.model: anthropic/claude-3-sonnet-20240229 is "
                                          r"retired; use anthropic/claude-sonnet-5-5"):
        check_routes(parse_config(data), load_catalog())
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(data))
    run = subprocess.run([sys.executable, "-m", "rhetor", "check-config", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and "chat.targets[1].model" in run.stderr and "claude-sonnet-5-5" in run.stderr
    del data["chat"]
    assert check_routes(parse_config(data), load_catalog()) == [
        "hermes.model: openai/gpt-4o is deprecated (shutdown 2027-01-14); move to openai/gpt-5.4"]


def test_retired_is_refused_and_deprecated_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    c = load_catalog()
    with pytest.raises(RetiredModelError) as info:
        c.admit("openai", "gpt-3.5-turbo")
    assert info.value.status == 400 and info.value.param == "model" and "'gpt-5.4-mini'" in info.value.message
    with caplog.at_level(logging.WARNING, logger="rhetor.catalog"):
        for _ in range(3):
            c.admit("anthropic", "claude-opus-4-5-20251101")
    lines = [r for r in caplog.records if "claude-opus-4-5-20251101" in r.getMessage()]
    assert len(lines) == 1 and "claude-opus-5-5" in lines[0].getMessage()
    assert c.admit("ollama", "some-local-model") is None  # unlisted models pass untouched


def test_requests_naming_retired_models_get_400_naming_the_successor(
        rhetor: Callable[..., AbstractContextManager[str]], make_settings: Callable[..., Settings]) -> None:
    with rhetor(make_settings()) as url, httpx.Client(base_url=url, timeout=30) as c:
        oa = c.post("/v1/chat/completions", json={"model": "openai/gpt-3.5-turbo",
                                                  "messages": [{"role": "user", "content": "hi"}]})
        assert oa.status_code == 400, oa.text
        err = oa.json()["error"]
        assert err["param"] == "model" and "gpt-5.4-mini" in err["message"]
        an = c.post("/v1/messages", headers={"anthropic-version": "2023-06-01"},
                    json={"model": "claude-3-haiku-20240307", "max_tokens": 10,
                          "messages": [{"role": "user", "content": "hi"}]})
        assert an.status_code == 400 and "claude-haiku-4-5" in an.json()["error"]["message"]
        native = c.post("/api/v1/chat", json={"message": "hi", "provider_id": "anthropic",
                                              "model_id": "claude-3-5-haiku-latest"})
        assert native.status_code == 400 and "claude-haiku-4-5" in native.text
        fallback = c.post("/api/v1/chat", json={"message": "hi", "options": {"fallback_provider": "openai",
                                                                             "fallback_model": "o1-mini"}})
        assert fallback.status_code == 400 and "gpt-5.4-mini" in fallback.text
        deprecated = c.post("/api/v1/chat", json={"message": "hi", "provider_id": "anthropic",
                                                  "model_id": "claude-sonnet-4-5"})
        assert deprecated.status_code == 200  # deprecated still runs (keyless: simulated answers)
        # Tekton's Terma hard-codes claude-3-sonnet-20240229 on the legacy adapter protocol: served on the successor
        legacy = c.post("/message", json={"message": "ls?", "context_id": "terma", "streaming": False,
                                          "options": {"model": "claude-3-sonnet-20240229", "provider": "claude"}})
        assert legacy.status_code == 200 and legacy.json()["message"]


def test_user_catalogue_extends_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"providers": {
        "openai": {"models": [{"id": "gpt-4o", "context_window": 64000, "status": "retired", "successor": "gpt-5.4",
                               "price": {"input": 1, "output": 2}},
                              {"id": "my-finetune", "context_window": 32000, "price": {"input": 9, "output": 9}}]},
        "vllm": {"default_model": "qwen3", "default_price": {"input": 0, "output": 0}}}}))
    c = load_catalog(path)
    assert c.context_window("openai", "my-finetune") == 32000
    with pytest.raises(RetiredModelError):
        c.admit("openai", "gpt-4o")
    assert c.entry("openai", "gpt-4o-2024-08-06") is None  # the override replaced the entry, aliases and all
    assert c.entry("openai", "gpt-5.4") is not None  # the rest of the shipped catalogue stays
    prices = load_prices(None, path)  # the ledger's prices come from the same catalogue
    assert prices.cost("openai", "my-finetune", Usage(1_000_000, 0)).usd == pytest.approx(9)
    assert prices.cost("vllm", "anything", Usage(10, 10)).priced


@pytest.mark.parametrize(("patch", "where"), [
    ({"providers": {"openai": {"models": [{"id": "x", "status": "deprecated", "successor": "gpt-5.4"}]}}},
     r"providers\.openai\.models\[x\]: a deprecated model needs its 'shutdown' date"),
    ({"providers": {"openai": {"models": [{"id": "x", "price": {"input": -1, "output": 1}}]}}},
     r"providers\.openai\.models\[x\]\.price\.input"),
    ({"providers": {"openai": {"models": [{"id": "x", "aliases": ["gpt-5.4"]}]}}}, r"'gpt-5\.4' is already listed"),
    ({"providers": {"openai": {"models": [{"id": "x", "status": "retired", "successor": "gpt-3.5-turbo"}]}}},
     r"models\[x\]\.successor"),
    ({"providers": {"openai": {"default_model": "gpt-4o"}}}, r"providers\.openai: .*default_model: 'gpt-4o' is "
                                                             r"deprecated"),
    ({"providers": {"openai": {"models": [{"id": "x", "context_windw": 5}]}}}, r"models\[x\]\.context_windw"),
])
def test_bad_user_catalogue_is_refused_naming_the_key_path(tmp_path: Path, patch: dict[str, Any],
                                                            where: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(patch))
    with pytest.raises(ConfigError, match=where) as info:
        load_catalog(path)
    assert "RHETOR_CATALOG" in info.value.message


def test_prices_come_from_the_catalogue() -> None:
    prices = load_prices()
    catalog = load_catalog()
    entry = catalog.entry("gemini", "gemini-3.8-flash")
    assert entry is not None and entry.price is not None
    assert prices.cost("gemini", "gemini-3.8-flash", Usage(1_000_000, 1_000_000)).usd == pytest.approx(
        entry.price.input + entry.price.output)
    assert not (Path(__file__).parent.parent / "rhetor/governance/prices.json").exists()  # one source of prices


def test_models_command_prints_current_models_only() -> None:
    run = subprocess.run([sys.executable, "-m", "rhetor", "models"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "anthropic/claude-sonnet-5-5" in run.stdout and "gemini/gemini-3.8-flash" in run.stdout
    assert "deprecated 2026-11-30" in run.stdout  # claude-sonnet-4-5, with its shutdown date
    assert "claude-3-sonnet-20240229" not in run.stdout and "claude-3-sonnet " not in run.stdout
    every = subprocess.run([sys.executable, "-m", "rhetor", "models", "--all", "anthropic"], capture_output=True,
                           text=True, timeout=60)
    assert "anthropic/claude-3-sonnet " in every.stdout and "gemini/" not in every.stdout
