"""The routing memo (rhetor.routing.memo) and the model-name memo (rhetor.routing.models.ModelNames) answer what
the unmemoized functions answer, follow a reload (new configuration objects), stay bounded, and never memoize an
error."""

from __future__ import annotations

from typing import Any

import pytest

from rhetor.catalog import load_catalog
from rhetor.errors import InvalidRequestError, ModelNotFoundError
from rhetor.routing import parse_config, route
from rhetor.routing.lifecycle import admit
from rhetor.routing.memo import RouteMemo
from rhetor.routing.models import ModelNames, pinned, resolve_model_name

DEFAULTS = {"anthropic": "claude-sonnet-4-5", "openai": "gpt-4o", "ollama": "llama3", "gemini": "gemini-3.8-flash",
            "simulated": "simulated-standard"}
CONFIG: dict[str, Any] = {
    "default": {"provider": "anthropic", "model": "claude-sonnet-4-5", "options": {"temperature": 0.7}},
    "chat": {"targets": [{"provider": "openai", "model": "gpt-4o"}, {"provider": "ollama"}],
             "options": {"temperature": 0.2, "max_tokens": 100}},
}
CATALOG = load_catalog()
NONE: dict[str, str] = {}  # no deployments, no listed models (one object: the memo compares by identity)


def direct(cfg: Any, *, pin: bool = False, legacy: bool = False, **kw: Any) -> Any:
    rt = route(cfg, defaults=DEFAULTS, deployments={}, listed={}, **kw)
    rt = pinned(rt, kw.get("options") or {}) if pin else rt
    return admit(rt, CATALOG, upgrade_retired=legacy)


def memo_route(memo: RouteMemo, cfg: Any, *, pin: bool = False, legacy: bool = False, **kw: Any) -> Any:
    args: dict[str, Any] = {"task_type": None, "component": None, "context_id": None, "provider_id": None,
                            "model_id": None, "options": {}, **kw}
    return memo.route(cfg, CATALOG, defaults=DEFAULTS, deployments=NONE, listed=NONE, pinned=pin,
                      upgrade_retired=legacy, **args)


CASES: list[dict[str, Any]] = [
    {},
    {"task_type": "chat"},
    {"task_type": "chat", "options": {"temperature": 1.0, "custom": "x", "top_p": None}},
    {"context_id": "chat:42"},
    {"component": "Chat", "task_type": "x"},
    {"provider_id": "openai", "model_id": "gpt-4o-mini", "pin": True, "options": {"temperature": 0.3}},
    {"options": {"provider": "ollama", "fallback_provider": "openai"}},
    {"model_id": "claude-opus-4-1", "provider_id": "anthropic", "legacy": True},
]


@pytest.mark.parametrize("case", CASES)
def test_memoized_route_is_the_routers(case: dict[str, Any]) -> None:
    cfg, memo = parse_config(CONFIG), RouteMemo()
    for _ in range(2):  # filled, then from the memo
        assert memo_route(memo, cfg, **case) == direct(cfg, **case)


def test_request_options_are_never_shared_between_requests() -> None:
    cfg, memo = parse_config(CONFIG), RouteMemo()
    first = memo_route(memo, cfg, task_type="chat", options={"temperature": 1.5})
    second = memo_route(memo, cfg, task_type="chat")
    assert first.options["temperature"] == 1.5 and second.options == {"temperature": 0.2, "max_tokens": 100}
    second.options["temperature"] = 9
    assert memo_route(memo, cfg, task_type="chat").options["temperature"] == 0.2


def test_a_new_configuration_empties_the_memo() -> None:
    memo = RouteMemo()
    assert memo_route(memo, parse_config(CONFIG)).targets[0].provider == "anthropic"
    reloaded = parse_config({**CONFIG, "default": {"provider": "openai", "model": "gpt-4o"}})
    assert memo_route(memo, reloaded).targets[0].provider == "openai"


def test_bounded() -> None:
    cfg, memo = parse_config(CONFIG), RouteMemo(size=3)
    for i in range(10):
        memo_route(memo, cfg, model_id=f"model-{i}")
    assert len(memo._known) == 3


def test_errors_are_not_memoized() -> None:
    cfg, memo = parse_config(CONFIG), RouteMemo()
    for _ in range(2):
        with pytest.raises(InvalidRequestError, match="retired"):  # a retired model: refused every time
            memo_route(memo, cfg, provider_id="anthropic", model_id="claude-opus-4-1", pin=True)
    assert memo._known[next(iter(memo._known))].admitted is None


def test_a_restricted_key_filters_before_admission() -> None:
    cfg, memo = parse_config(CONFIG), RouteMemo()
    rt = memo_route(memo, cfg, task_type="chat", permitted=lambda ts: tuple(t for t in ts if t.provider == "ollama"))
    assert [t.provider for t in rt.targets] == ["ollama"]
    assert [t.provider for t in memo_route(memo, cfg, task_type="chat").targets] == ["openai", "ollama", "simulated"]


def test_model_names_memo() -> None:
    names, aliases = ModelNames(size=2), {"fast": "openai/gpt-4o-mini"}
    for model, task in [("fast", None), ("openai/gpt-4o", "chat"), ("rhetor/code", None), ("fast", None)]:
        assert names.resolve(model, aliases=aliases, task_header=task, deployments=NONE, listed=NONE) == \
            resolve_model_name(model, aliases=aliases, task_header=task)
    assert len(names._known) == 2
    with pytest.raises(ModelNotFoundError):
        names.resolve("nonsense", aliases=aliases, task_header=None, deployments=NONE, listed=NONE)
    assert ("nonsense", None) not in names._known
    listed = {"my-model": "openai"}  # a reload brings new listed models: the memo starts over
    assert names.resolve("my-model", aliases=aliases, task_header=None, deployments={"d": "openai"},
                         listed=listed) == resolve_model_name("openai/my-model")
