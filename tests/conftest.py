"""Shared fixtures: Settings for tests, a real Rhetor served over HTTP on 127.0.0.1, and the fake upstreams."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from rhetor.api.app import create_app
from rhetor.routing.config import TaskConfig
from rhetor.settings import Settings
from tests.engines import pg_url, postgres_server, redis_prefix, redis_server  # noqa: F401  (fixtures)
from tests.fakes.server import serve_app

# A test never sees the developer's real keys or servers.
_VENDOR_ENV = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OLLAMA_HOST", "OLLAMA_API_BASE", "ANTHROPIC_BASE_URL",
               "OPENAI_BASE_URL", "RHETOR_TASK_CONFIG", "RHETOR_DATA_DIR", "GEMINI_API_KEY", "GOOGLE_API_KEY",
               "GEMINI_BASE_URL", "RHETOR_CATALOG", "RHETOR_PROVIDERS", "RHETOR_BALANCE", "GROQ_API_KEY",
               "TOGETHER_API_KEY", "DEEPSEEK_API_KEY", "MISTRAL_API_KEY", "FIREWORKS_API_KEY", "OPENROUTER_API_KEY",
               "XAI_API_KEY", "PERPLEXITY_API_KEY")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in _VENDOR_ENV:
        monkeypatch.delenv(var, raising=False)
    # Subprocesses inherit this: no test reaches for a real Hermes on localhost:8001 (nothing listens on 9).
    # Tests that exercise Hermes pass their fake's HERMES_URL explicitly.
    monkeypatch.setenv("HERMES_URL", "http://127.0.0.1:9")
    # The deterministic embedder unless a test asks for the local model: loading torch in every test server
    # would cost ~5 s of CPU each on a 2-core machine.
    monkeypatch.setenv("RHETOR_EMBEDDER", "simulated")


def test_settings(data_dir: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "data_dir": data_dir,
        "simulated_delay_scale": 0.0,
        "backoff_base_s": 0.01,
        "ollama_host": "http://127.0.0.1:9",  # nothing listens: Ollama is unavailable unless a test says so
        "availability_ttl_s": 0.5,
        "connect_timeout_s": 1.0,
        "embedder": "simulated",
    }
    base.update(overrides)
    return Settings(**base)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    return lambda **kw: test_settings(tmp_path, **kw)


@contextmanager
def running_rhetor(settings: Settings, config: TaskConfig | None = None) -> Iterator[str]:
    with serve_app(create_app(settings, config), lifespan="on") as url:
        yield url


@pytest.fixture
def rhetor() -> Callable[..., AbstractContextManager[str]]:
    """`with rhetor(settings[, config]) as base_url:` — a real Rhetor on loopback."""
    return running_rhetor


@pytest.fixture
def simulated_rhetor(make_settings: Callable[..., Settings]) -> Iterator[str]:
    """A keyless Rhetor (answers from the simulated provider)."""
    with running_rhetor(make_settings()) as url:
        yield url
