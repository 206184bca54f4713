"""Tests for the tasks.json schema and the pure router: no network, no files except tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rhetor.errors import ConfigError, InvalidRequestError, UnknownProviderError
from rhetor.routing import Route, Target, describe, load_config, parse_config, route
from rhetor.routing.config import TaskConfig

DEFAULTS = {
    "anthropic": "claude-3-sonnet-20240229",
    "openai": "gpt-4o",
    "ollama": "llama3",
    "gemini": "gemini-3.8-flash",
    "simulated": "simulated-standard",
}
SIM = Target("simulated", "simulated-standard")

CONFIG: dict[str, Any] = {
    "default": {"provider": "anthropic", "model": "claude-sonnet-4-5", "options": {"temperature": 0.7}},
    "chat": {
        "provider": "claude",
        "model": "claude-3-5-haiku-latest",
        "options": {"temperature": 0.8, "max_tokens": 2000, "fallback_provider": "openai",
                    "fallback_model": "gpt-4o-mini", "custom_knob": "x"},
    },
    "code": {
        "targets": [
            {"provider": "anthropic", "model": "claude-sonnet-4-5", "timeout_s": 60, "retries": 1},
            {"provider": "ollama"},
        ],
        "options": {"temperature": 0.2},
    },
    "ergon": {"provider": "openai", "model": "gpt-4o"},
    "ergon_code": {"provider": "ollama", "model": "codellama"},
    "offline": {"targets": [{"provider": "ollama", "model": "llama3"}], "simulated_fallback": False},
}


@pytest.fixture
def cfg() -> TaskConfig:
    return parse_config(CONFIG)


def r(cfg: TaskConfig, **kw: Any) -> Route:
    return route(cfg, defaults=DEFAULTS, **kw)


def pairs(rt: Route) -> list[tuple[str, str]]:
    return [(t.provider, t.model) for t in rt.targets]


# --- lookup order -------------------------------------------------------------------------------------


def test_lookup_component_task_first(cfg: TaskConfig) -> None:
    rt = r(cfg, component="ergon", task_type="code")
    assert rt.key == "ergon_code"
    assert pairs(rt) == [("ollama", "codellama"), ("simulated", "simulated-standard")]


def test_lookup_component_second(cfg: TaskConfig) -> None:
    assert r(cfg, component="ergon", task_type="planning").key == "ergon"
    assert r(cfg, component="ergon").key == "ergon"


def test_lookup_task_third(cfg: TaskConfig) -> None:
    rt = r(cfg, component="hermes", task_type="code")
    assert (rt.key, rt.component, rt.task_type) == ("code", "hermes", "code")


def test_lookup_default_last(cfg: TaskConfig) -> None:
    rt = r(cfg, component="hermes", task_type="planning")
    assert rt.key == "default"
    assert r(cfg).key == "default"
    assert r(cfg).task_type == "default"
    assert r(cfg, task_type="").task_type == "default"


def test_component_from_context_prefix(cfg: TaskConfig) -> None:
    rt = r(cfg, context_id="Ergon:session-1", task_type="code")
    assert (rt.component, rt.key) == ("ergon", "ergon_code")


def test_explicit_component_wins_over_context(cfg: TaskConfig) -> None:
    rt = r(cfg, component="hermes", context_id="ergon:x", task_type="code")
    assert (rt.component, rt.key) == ("hermes", "code")


def test_context_without_colon_is_not_a_component(cfg: TaskConfig) -> None:
    assert r(cfg, context_id="ergon").component is None
    assert r(cfg, context_id=":x").component is None


# --- chains -------------------------------------------------------------------------------------------


def test_original_form_chain_with_fallback(cfg: TaskConfig) -> None:
    rt = r(cfg, task_type="chat")
    assert pairs(rt) == [
        ("anthropic", "claude-3-5-haiku-latest"),  # "claude" canonicalized
        ("openai", "gpt-4o-mini"),
        ("simulated", "simulated-standard"),
    ]
    assert rt.options == {"temperature": 0.8, "max_tokens": 2000, "custom_knob": "x"}


def test_extended_form_targets_and_default_model(cfg: TaskConfig) -> None:
    rt = r(cfg, task_type="code")
    assert rt.targets == (
        Target("anthropic", "claude-sonnet-4-5", 60.0, 1),
        Target("ollama", "llama3", None, 2),
        SIM,
    )


def test_simulated_not_appended_when_disabled(cfg: TaskConfig) -> None:
    assert pairs(r(cfg, task_type="offline")) == [("ollama", "llama3")]


def test_simulated_not_duplicated() -> None:
    c = parse_config({"default": {"targets": [{"provider": "simulated", "model": "simulated-fast"},
                                              {"provider": "openai"}]}})
    assert pairs(route(c, defaults=DEFAULTS)) == [("simulated", "simulated-fast"), ("openai", "gpt-4o")]


def test_dedupe_keeps_first() -> None:
    c = parse_config({"default": {
        "targets": [{"provider": "openai", "model": "gpt-4o", "timeout_s": 5}, {"provider": "ollama"},
                    {"provider": "openai"}],
        "options": {"fallback_provider": "ollama", "fallback_model": "llama3"},
    }})
    rt = route(c, defaults=DEFAULTS)
    assert rt.targets == (Target("openai", "gpt-4o", 5.0, 2), Target("ollama", "llama3"), SIM)


# --- request-time overrides ---------------------------------------------------------------------------


def test_tekton_llm_client_body(cfg: TaskConfig) -> None:
    rt = r(cfg, context_id="ergon", provider_id="simulated", model_id="simulated-standard",
           options={"temperature": 0.1, "fallback_provider": None, "fallback_model": None, "max_tokens": 50})
    assert rt.targets[0] == SIM
    assert [t.provider for t in rt.targets].count("simulated") == 1
    assert rt.options == {"temperature": 0.1, "max_tokens": 50}


def test_options_provider_and_model_reroute(cfg: TaskConfig) -> None:
    rt = r(cfg, task_type="chat", options={"provider": "simulated", "model": "simulated-fast", "top_p": 0.5})
    assert pairs(rt) == [("simulated", "simulated-fast"), ("openai", "gpt-4o-mini")]
    assert rt.options == {"temperature": 0.8, "max_tokens": 2000, "custom_knob": "x", "top_p": 0.5}


def test_fields_win_over_options(cfg: TaskConfig) -> None:
    rt = r(cfg, provider_id="openai", model_id="gpt-4o-mini", options={"provider": "ollama", "model": "x"})
    assert rt.targets[0] == Target("openai", "gpt-4o-mini")


def test_model_alone_keeps_primary_provider(cfg: TaskConfig) -> None:
    rt = r(cfg, task_type="chat", options={"model": "claude-opus-4-1"})
    assert pairs(rt)[:2] == [("anthropic", "claude-opus-4-1"), ("openai", "gpt-4o-mini")]
    assert ("anthropic", "claude-3-5-haiku-latest") not in pairs(rt)  # replaced, not demoted


def test_provider_alone_uses_its_default_model(cfg: TaskConfig) -> None:
    assert r(cfg, provider_id="ollama").targets[0] == Target("ollama", "llama3")


def test_alias_claude_override(cfg: TaskConfig) -> None:
    rt = r(cfg, task_type="code", options={"provider": "claude", "model": "claude-3-5-haiku-latest"})
    assert rt.targets[0] == Target("anthropic", "claude-3-5-haiku-latest")


def test_request_fallback_inserted_after_primary(cfg: TaskConfig) -> None:
    rt = r(cfg, task_type="chat", options={"fallback_provider": "ollama", "fallback_model": None})
    assert pairs(rt) == [
        ("anthropic", "claude-3-5-haiku-latest"),
        ("ollama", "llama3"),
        ("openai", "gpt-4o-mini"),
        ("simulated", "simulated-standard"),
    ]
    assert "fallback_provider" not in rt.options


def test_request_fallback_model_alone_uses_primary_provider(cfg: TaskConfig) -> None:
    rt = r(cfg, provider_id="openai", options={"fallback_model": "gpt-4o-mini"})
    assert pairs(rt)[:2] == [("openai", "gpt-4o"), ("openai", "gpt-4o-mini")]


def test_unknown_provider_override_lists_valid(cfg: TaskConfig) -> None:
    with pytest.raises(UnknownProviderError) as info:
        r(cfg, provider_id="mystery-ai")
    for name in ("anthropic", "openai", "gemini", "ollama", "simulated"):
        assert name in info.value.message
    with pytest.raises(UnknownProviderError):
        r(cfg, options={"fallback_provider": "nope"})


def test_non_string_override_is_invalid_request(cfg: TaskConfig) -> None:
    with pytest.raises(InvalidRequestError, match=r"options\.provider"):
        r(cfg, options={"provider": 3})


def test_null_request_options_do_not_erase_config(cfg: TaskConfig) -> None:
    assert r(cfg, task_type="chat", options={"temperature": None}).options["temperature"] == 0.8


def test_route_does_not_mutate_inputs(cfg: TaskConfig) -> None:
    opts = {"provider": "openai", "temperature": 0.3}
    r(cfg, task_type="chat", options=opts)
    r(cfg, task_type="chat").options["temperature"] = 99
    assert opts == {"provider": "openai", "temperature": 0.3}
    assert r(cfg, task_type="chat").options["temperature"] == 0.8


# --- config validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"default": {"provider": "anthropic", "foo": 1}}, "default.foo: Extra inputs are not permitted"),
        ({"default": {"provider": "anthropic"}, "chat": {"targets": [{"provider": "foo"}]}},
         "chat.targets.0.provider: unknown provider 'foo'"),
        ({"default": {"provider": "anthropic", "options": {"temperature": "hot"}}},
         "default.options.temperature: Input should be a valid number"),
        ({"default": {"provider": "anthropic", "options": {"fallback_provider": "x"}}},
         "default.options.fallback_provider: unknown provider 'x'"),
        ({"chat": {"provider": "anthropic"}}, "default"),
        ({"default": {"targets": [{"provider": "ollama", "timeout_s": 0}]}}, "default.targets.0.timeout_s"),
        ({"default": {"targets": [{"provider": "ollama", "retries": -1}]}}, "default.targets.0.retries"),
        ({"default": {"targets": [{"provider": "ollama", "bogus": 1}]}}, "default.targets.0.bogus"),
        ({"default": {"model": "gpt-4o"}}, "default: an entry needs 'provider'"),
        ({"default": {"provider": "openai", "targets": [{"provider": "ollama"}]}}, "default: use either"),
        ({"default": {"targets": []}}, "default: 'targets' must list at least one target"),
        ({"default": {"provider": "openai", "options": {"model": "x"}}}, "default.options: 'model' belongs"),
        ({"default": "anthropic"}, "default: Input should be a valid dictionary"),
        ([], "top level must be an object"),
    ],
)
def test_bad_config_names_the_key(data: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.message.startswith("tasks.json: ")
    assert expected in info.value.message


def test_missing_default_names_default() -> None:
    with pytest.raises(ConfigError, match=r"tasks\.json: default: required entry is missing"):
        parse_config({"chat": {"provider": "anthropic"}})


def test_unknown_option_keys_pass_through() -> None:
    c = parse_config({"default": {"provider": "openai", "options": {"bypass_budget": True, "stop": "END"}}})
    assert route(c, defaults=DEFAULTS).options == {"bypass_budget": True, "stop": ["END"]}


def test_keys_are_case_insensitive() -> None:
    c = parse_config({"DEFAULT": {"provider": "openai"}, "Chat": {"provider": "ollama"}})
    assert route(c, defaults=DEFAULTS, task_type="CHAT").key == "chat"


def test_load_config_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "tasks.json"
    path.write_text('{\n  "default": {"provider": "openai",}\n}')
    with pytest.raises(ConfigError, match=r"tasks\.json: invalid JSON at line 2 column"):
        load_config(path)


def test_load_config_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"default": {"provider": "openai"}, "chat": {"provider": "foo"}}))
    with pytest.raises(ConfigError, match=r"mine\.json: chat\.provider: unknown provider 'foo'"):
        load_config(path)


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.json")


def test_load_config_from_file(tmp_path: Path) -> None:
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(CONFIG))
    assert load_config(path) == parse_config(CONFIG)


def test_shipped_config_loads_and_routes() -> None:
    c = load_config(None)
    for key in ("default", "chat", "code", "planning", "reasoning", "ergon", "hermes", "telos", "engram",
                "terma", "athena"):
        assert key in c
    for key in c.keys():
        rt = route(c, defaults=DEFAULTS, task_type=key)
        assert rt.key == key
        assert rt.targets[-1].provider == "simulated"
    chat = route(c, defaults=DEFAULTS, task_type="chat")
    assert [t.provider for t in chat.targets] == ["anthropic", "openai", "gemini", "ollama", "simulated"]
    code = route(c, defaults=DEFAULTS, task_type="code")
    assert pairs(code)[:2] == [("anthropic", "claude-sonnet-5-5"), ("openai", "gpt-5.4")]  # current models


def test_describe_lists_every_key(cfg: TaskConfig) -> None:
    text = describe(cfg, DEFAULTS)
    for key in CONFIG:
        assert any(line.startswith(f"{key} ") for line in text.splitlines()), key
    assert "anthropic/claude-3-5-haiku-latest -> openai/gpt-4o-mini -> simulated/simulated-standard" in text
    assert "ollama/llama3 (default model)" in text
    offline = next(line for line in text.splitlines() if line.startswith("offline "))
    assert "simulated" not in offline


def test_describe_shipped_config() -> None:
    c = load_config(None)
    text = describe(c, DEFAULTS)
    assert len(text.splitlines()) == len(c.keys()) + 1
