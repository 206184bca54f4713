"""Tekton's September 2025 `shared/rhetor_client.py` (contracts §8) and the history rules for bare component ids
(issue items 9 and 11), against a real Rhetor on loopback; the router's bare-model rule without a network."""

from __future__ import annotations

import pytest

from rhetor.routing.config import load_config
from rhetor.routing.names import provider_for_model
from rhetor.routing.router import route

DEFAULTS = {"anthropic": "claude-3-sonnet-20240229", "openai": "gpt-4o", "ollama": "llama3",
            "simulated": "simulated-standard"}


@pytest.mark.parametrize(("model", "provider"), [
    ("gpt-4o-mini", "openai"), ("o3-mini", "openai"), ("claude-3-5-haiku-latest", "anthropic"),
    ("llama3", "ollama"), ("qwen2.5:7b", "ollama"), ("gpt-oss:20b", "ollama"), ("simulated-fast", "simulated"),
    ("my-finetune", None),
])
def test_bare_model_names_name_their_provider(model: str, provider: str | None) -> None:
    assert provider_for_model(model) == provider


def test_bare_model_id_runs_on_the_provider_that_serves_it() -> None:
    config = load_config()
    code = route(config, defaults=DEFAULTS, task_type="code", model_id="gpt-4o-mini")
    assert (code.targets[0].provider, code.targets[0].model) == ("openai", "gpt-4o-mini")  # was anthropic/gpt-4o-mini
    assert code.key == "code" and code.options["temperature"] == 0.2  # the task's entry still applies
    assert [(t.provider, t.model) for t in code.targets[1:]] == [("openai", "gpt-4o"), ("simulated",
                                                                                      "simulated-standard")]
    local = route(config, defaults=DEFAULTS, component="metis", task_type="reasoning", model_id="llama3")
    assert local.targets[0].provider == "ollama"
    prefixed = route(config, defaults=DEFAULTS, model_id="claude/claude-3-5-haiku-latest")
    assert (prefixed.targets[0].provider, prefixed.targets[0].model) == ("anthropic", "claude-3-5-haiku-latest")
    unknown = route(config, defaults=DEFAULTS, task_type="chat", model_id="my-finetune")
    assert unknown.targets[0].provider == "anthropic"  # a name that says nothing keeps the route's provider
    pinned = route(config, defaults=DEFAULTS, provider_id="openai", model_id="llama3")
    assert pinned.targets[0].provider == "openai"  # an explicit provider always wins
