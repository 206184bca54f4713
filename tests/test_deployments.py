"""The providers file (issue 12 items 2, 6): bad files refused at start and by check-config naming the key
path; `deployment/model`, `provider/model` and bare names route; an unknown deployment is a 400 listing the
valid ones; /api/v1/providers, /v1/models and `python -m rhetor providers` list deployments with availability
and why not, and never a key; the reply names the deployment that answered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from rhetor.api.app import create_app
from rhetor.catalog import load_catalog
from rhetor.cli import main
from rhetor.errors import ConfigError, UnknownProviderError
from rhetor.providers.deployments import parse_deployments
from rhetor.routing.config import parse_config
from rhetor.routing.deployment_check import check_deployments
from rhetor.routing.router import route
from tests.conftest import running_rhetor
from tests.conftest import test_settings as settings_for
from tests.fakes.openai import running_fake_openai

SECRET = "sk-very-secret-123"


def _refused(data: Any, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        parse_deployments(data, "providers.yaml", env or {})
    return err.value.message


def test_bad_files_name_the_key_path() -> None:
    assert "deployments[0].kind" in _refused([{"name": "x", "kind": "azure"}])
    assert "deployments[1].name: duplicate name 'a'" in _refused([{"name": "a", "kind": "openai", "api_key": "k"},
                                                                  {"name": "a", "kind": "ollama"}])
    msg = _refused([{"name": "g", "kind": "openai", "preset": "groq"}])
    assert "deployments[0].api_key: preset groq needs a key" in msg and "GROQ_API_KEY" in msg
    assert "deployments[0].preset: unknown preset 'nope'" in _refused([{"name": "g", "kind": "openai",
                                                                        "preset": "nope"}])
    assert "deployments[0].api_key_env: MY_KEY is not set" in _refused([{"name": "g", "kind": "openai",
                                                                         "api_key_env": "MY_KEY"}])
    assert "deployments[0].colour" in _refused([{"name": "g", "kind": "openai", "colour": "red"}])
    # a preset's key from its usual variable
    deps = parse_deployments([{"name": "g", "kind": "openai", "preset": "groq"}], env={"GROQ_API_KEY": "gk"})
    assert deps.specs[0].keys[0].get_secret_value() == "gk" and "gk" not in repr(deps)


def test_retired_and_routed_is_refused() -> None:
    catalog = load_catalog(None)
    deps = parse_deployments([{"name": "old", "kind": "anthropic", "api_key": "k", "models": ["claude-opus-4-0"]}])
    kinds = {"old": "anthropic"}
    routed = parse_config({"default": {"provider": "old", "model": "claude-opus-4-0"}}, deployments=kinds)
    with pytest.raises(ConfigError) as err:
        check_deployments(routed, deps.by_name(), catalog)
    assert "default.model: old/claude-opus-4-0 is retired" in err.value.message
    assert "deployments[0].models[0]" in err.value.message and "claude-opus-5-5" in err.value.message
    # listed but not routed: allowed
    check_deployments(parse_config({"default": {"provider": "simulated"}}), deps.by_name(), catalog)


def test_refused_at_start_and_by_check_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "providers.json"
    bad.write_text(json.dumps({"deployments": [{"name": "a", "kind": "openai", "api_key": SECRET},
                                               {"name": "a", "kind": "gemini", "api_key": SECRET}]}))
    with pytest.raises(ConfigError, match=r"deployments\[1\]\.name"):
        create_app(settings_for(tmp_path, providers_file=bad))
    monkeypatch.setenv("RHETOR_PROVIDERS", str(bad))
    monkeypatch.setenv("RHETOR_DATA_DIR", str(tmp_path))
    assert main(["check-config"]) == 2
    err = capsys.readouterr().err
    assert "deployments[1].name: duplicate name 'a'" in err and SECRET not in err


def test_route_names() -> None:
    kinds = {"oa-1": "openai", "groq": "openai"}
    listed = {"llama-3.3-70b-versatile": "openai"}
    cfg = parse_config({"default": {"provider": "oa-1", "model": "gpt-5.4"}}, deployments=kinds)
    defaults = {"openai": "gpt-5.4", "simulated": "simulated-fast", "oa-1": "gpt-5.4", "groq": "x"}

    def first(**kw: Any) -> Any:
        return route(cfg, defaults=defaults, deployments=kinds, listed=listed, **kw).targets[0]

    t = first()
    assert (t.provider, t.model, t.deployment) == ("openai", "gpt-5.4", "oa-1")  # a route naming a deployment
    t = first(model_id="groq/llama-3.3-70b-versatile")
    assert (t.provider, t.model, t.deployment) == ("openai", "llama-3.3-70b-versatile", "groq")
    t = first(model_id="openai/gpt-5.4")  # any deployment of the provider
    assert (t.provider, t.deployment) == ("openai", None)
    t = first(model_id="llama-3.3-70b-versatile")  # a bare model a deployment lists
    assert (t.provider, t.model, t.deployment) == ("openai", "llama-3.3-70b-versatile", None)
    with pytest.raises(UnknownProviderError) as err:
        first(model_id="nope/gpt-5.4")
    assert "'nope'" in err.value.message and "oa-1" in err.value.message and "groq" in err.value.message
    with pytest.raises(UnknownProviderError):
        first(provider_id="nope")


def test_http_deployments(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
                          ) -> None:
    with running_fake_openai() as fake:
        path = tmp_path / "providers.yaml"
        path.write_text(f"""
strategy: least-inflight
deployments:
  - name: oa-1
    kind: openai
    base_url: {fake.base_url}
    api_keys: [{SECRET}, {SECRET}-2]
    models: [gpt-5.4]
    region: eu
  - name: groq
    kind: openai
    preset: vllm
    base_url: http://127.0.0.1:9/v1
""")
        settings = settings_for(tmp_path, providers_file=path)
        with running_rhetor(settings) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
            raw = client.chat.completions.with_raw_response.create(
                model="oa-1/gpt-5.4", messages=[{"role": "user", "content": "Hi"}])
            assert raw.headers["x-rhetor-deployment"] == "oa-1" and raw.parse().choices[0].message.content
            r = httpx.post(f"{url}/api/v1/chat", json={"message": "Hi", "model_id": "nope/gpt-5.4"})
            assert r.status_code == 400 and "oa-1" in r.text and "groq" in r.text
            r = httpx.post(f"{url}/api/v1/chat", json={"message": "Hi", "model_id": "gpt-5.4"})
            assert r.status_code == 200 and r.json()["attempts"][-1]["deployment"] == "oa-1"
            providers = httpx.get(f"{url}/api/v1/providers").text
            body = json.loads(providers)["providers"]
            assert body["oa-1"]["available"] and body["oa-1"]["region"] == "eu"
            assert [k["key"] for k in body["oa-1"]["keys"]] == ["key 1 of 2", "key 2 of 2"]
            assert not body["groq"]["available"] and "not reachable" in body["groq"]["reason"]
            models = [m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]]
            assert "oa-1/gpt-5.4" in models
            assert SECRET not in providers and SECRET not in httpx.get(f"{url}/v1/models").text
    monkeypatch.setenv("RHETOR_PROVIDERS", str(path))
    assert main(["providers"]) == 0
    out = capsys.readouterr().out
    assert "oa-1" in out and "keys=2" in out and "groq" in out and SECRET not in out
