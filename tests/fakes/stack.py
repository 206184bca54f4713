"""All three fake upstreams and a real Rhetor routed to them, for tests of the OpenAI- and Anthropic-compatible
fronts across the provider matrix. Knows Rhetor's settings only to point it at the fakes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rhetor.api.app import create_app
from rhetor.routing.config import TaskConfig
from tests.fakes.anthropic import FakeAnthropic, running_fake_anthropic
from tests.fakes.ollama import FakeOllama, running_fake_ollama
from tests.fakes.openai import FakeOpenAI, running_fake_openai
from tests.fakes.server import serve_app

UPSTREAM_KEYS = {"anthropic": "test-key", "openai": "sk-upstream-secret-0123456789"}
# provider -> (model name a compat client sends, the text its fake answers with)
MATRIX: dict[str, tuple[str, str]] = {
    "anthropic": ("anthropic/claude-sonnet-4-5", "Hello from fake Anthropic"),
    "openai": ("openai/gpt-4o-mini", "Hello from fake OpenAI"),
    "ollama": ("ollama/llama3", "Hello from fake Ollama"),
    "simulated": ("simulated/simulated-fast", 'I received your message: "'),
}


@dataclass
class Stack:
    url: str
    anthropic: FakeAnthropic
    openai: FakeOpenAI
    ollama: FakeOllama


def stack_settings(data_dir: Path, anthropic: FakeAnthropic, openai: FakeOpenAI, ollama: FakeOllama,
                   **overrides: Any) -> Any:
    from tests.conftest import test_settings

    return test_settings(data_dir, anthropic_api_key=UPSTREAM_KEYS["anthropic"], anthropic_base_url=anthropic.base_url,
                         openai_api_key=UPSTREAM_KEYS["openai"], openai_base_url=openai.base_url,
                         ollama_host=ollama.base_url, **overrides)


@contextmanager
def running_stack(data_dir: Path, config: TaskConfig | None = None, **overrides: Any) -> Iterator[Stack]:
    with running_fake_anthropic() as a, running_fake_openai() as o, running_fake_ollama() as ol:
        settings = stack_settings(data_dir, a, o, ol, **overrides)
        with serve_app(create_app(settings, config), lifespan="on") as url:
            yield Stack(url, a, o, ol)


__all__ = ["MATRIX", "UPSTREAM_KEYS", "Stack", "running_stack", "stack_settings"]
