"""Per-component system prompts: the built-ins, which one a request picks, how the caller's prompt joins it, and
user overrides through the API — checked on the wire, in the `system` field the fake Anthropic upstream receives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest

from rhetor.prompts import TemplateStore, system_prompt_for
from rhetor.routing.config import TaskConfig
from rhetor.settings import Settings
from tests.fakes.anthropic import FakeAnthropic, running_fake_anthropic

COMPONENTS = ["engram", "hermes", "ergon", "rhetor", "terma", "athena", "prometheus", "harmonia", "telos",
              "synthesis", "metis", "apollo", "penia", "sophia", "hephaestus"]
CONTEXTS = ["awt-team", "agora", "default"]
TONES = {"engram": "precise", "hermes": "efficient", "prometheus": "analytical", "ergon": "action-oriented",
         "rhetor": "adaptive", "telos": "approachable", "sophia": "inquisitive", "athena": "informative",
         "synthesis": "methodical"}  # tekton-contracts §6


@pytest.mark.parametrize("name", COMPONENTS + CONTEXTS)
def test_every_component_and_context_has_a_full_prompt(name: str) -> None:
    store = TemplateStore(None)
    version = store.get(f"system.{name}")
    assert version.source == "builtin" and version.metadata["component"] == name
    text = store.builtin_component_prompt(name)
    assert text is not None and text.startswith("# ")
    for section in ("## Role", "## Capabilities", "## Communication Style", "## Collaboration", "- Tone: ",
                    "- Focus: ", "- Style: ", "- Personality: "):
        assert section in text, (name, section)
    if name in TONES:
        assert f"- Tone: {TONES[name]}\n" in text
    if name in COMPONENTS:
        assert text.startswith(f"# {name.capitalize()} - Tekton AI Component\n")


def test_combination_rule_without_a_server() -> None:
    assert system_prompt_for(None, "mine") == "mine"
    assert system_prompt_for(None, None) is None
    combined = system_prompt_for("athena", "mine")
    assert combined is not None and combined.startswith("# Athena - Tekton AI Component") and combined.endswith(
        "\n\nmine")
    generic = system_prompt_for("zephyr", None)
    assert generic is not None and generic.startswith("# Zephyr - Tekton AI Component\n\n## Role\nYou are Zephyr,")


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with running_fake_anthropic() as f:
        yield f


@pytest.fixture
def upstream_rhetor(make_settings: Callable[..., Settings], rhetor: Callable[..., AbstractContextManager[str]],
                    fake: FakeAnthropic) -> Iterator[str]:
    config = TaskConfig.model_validate({"default": {"provider": "anthropic", "model": "claude-sonnet-4-5"}})
    with rhetor(make_settings(anthropic_api_key="test-key", anthropic_base_url=fake.base_url), config) as url:
        yield url


def sent_system(fake: FakeAnthropic, url: str, **body: Any) -> str | None:
    r = httpx.post(f"{url}/api/v1/chat", json={"message": "hi", **body}, timeout=30)
    assert r.status_code == 200, r.text
    system = fake.requests[-1].get("system")
    if isinstance(system, list):  # content blocks
        return "".join(block["text"] for block in system)
    return system


def test_component_picks_its_prompt(upstream_rhetor: str, fake: FakeAnthropic) -> None:
    ergon = TemplateStore(None).builtin_component_prompt("ergon")
    telos = TemplateStore(None).builtin_component_prompt("telos")
    assert sent_system(fake, upstream_rhetor, component="ergon") == ergon
    assert sent_system(fake, upstream_rhetor, context_id="telos:t1") == telos  # context prefix
    assert sent_system(fake, upstream_rhetor, component="Ergon", context_id="telos:t2") == ergon  # explicit wins
    agora = TemplateStore(None).builtin_component_prompt("agora")
    assert sent_system(fake, upstream_rhetor, context_id="agora:x") == agora
    assert sent_system(fake, upstream_rhetor) is None  # no component, no caller prompt: none at all
    assert sent_system(fake, upstream_rhetor, system_prompt="only mine") == "only mine"
    unknown = sent_system(fake, upstream_rhetor, component="zephyr")
    assert unknown is not None and unknown.startswith("# Zephyr - Tekton AI Component")


def test_caller_prompt_follows_the_component_prompt(upstream_rhetor: str, fake: FakeAnthropic) -> None:
    ergon = TemplateStore(None).builtin_component_prompt("ergon")
    assert sent_system(fake, upstream_rhetor, component="ergon", system_prompt="be brief") == f"{ergon}\n\nbe brief"
    r = httpx.post(f"{upstream_rhetor}{'/api/v1/templates'}", json={"id": "tone", "text": "Answer in {{ lang }}.",
                                                                   "variables": {"lang": "string"}})
    assert r.status_code == 201, r.text
    body = {"messages": [{"role": "system", "content": "sys msg"}, {"role": "user", "content": "hi"}],
            "component": "ergon", "system_prompt": "be brief", "template_id": "tone", "variables": {"lang": "Latin"}}
    r = httpx.post(f"{upstream_rhetor}/api/v1/chat", json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert fake.requests[-1]["system"] == f"{ergon}\n\nAnswer in Latin.\n\nbe brief\n\nsys msg"


def test_users_override_a_component_prompt_through_the_api(upstream_rhetor: str, fake: FakeAnthropic) -> None:
    original = TemplateStore(None).builtin_component_prompt("hermes")
    assert sent_system(fake, upstream_rhetor, component="hermes") == original  # now cached
    r = httpx.put(f"{upstream_rhetor}/api/v1/templates/system.hermes",
                  json={"text": "You are {{ name }}, the switchboard.", "variables": {"name": "string"}})
    assert r.status_code == 200, r.text
    assert sent_system(fake, upstream_rhetor, context_id="hermes:x") == "You are Hermes, the switchboard."
    r = httpx.put(f"{upstream_rhetor}/api/v1/templates/system.hermes", json={"active_version": 0})
    assert r.status_code == 200 and r.json()["active_version"] == 0
    assert sent_system(fake, upstream_rhetor, component="hermes") == original
    r = httpx.put(f"{upstream_rhetor}/api/v1/templates/system.hermes", json={"active_version": 1})
    assert sent_system(fake, upstream_rhetor, component="hermes") == "You are Hermes, the switchboard."
    r = httpx.delete(f"{upstream_rhetor}/api/v1/templates/system.hermes")
    assert r.status_code == 200 and r.json()["removed_versions"] == [1]
    assert sent_system(fake, upstream_rhetor, component="hermes") == original
    # the generic prompt of components without their own is a template too
    r = httpx.put(f"{upstream_rhetor}/api/v1/templates/system.generic", json={"text": "You are {{ name }}."})
    assert r.status_code == 200, r.text
    assert sent_system(fake, upstream_rhetor, component="zephyr") == "You are Zephyr."
