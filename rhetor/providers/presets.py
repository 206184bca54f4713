"""Named presets for OpenAI-compatible services: each one's default base URL, key variable, extra headers,
model discovery and known quirks, in one table. A deployment of kind `openai` that names a preset gets all
of it and needs only a key (or, for local servers, only a base URL).

Quirks are data read by rhetor.providers.compatible, the one place they are handled:
    stream_options  False: the server refuses `stream_options` (Mistral's schema forbids unknown fields) and
                    sends usage in its last chunk anyway
    usage_at        where a stream's usage arrives when it is not `usage` (Groq: `x_groq.usage`)
    cached_field    the usage field holding cached prompt tokens when it is not
                    `prompt_tokens_details.cached_tokens` (DeepSeek: `prompt_cache_hit_tokens`)
    seed_field      the name the server gives `seed` (Mistral: `random_seed`)
    discover        False: the server has no GET /models (Perplexity); the deployment's `models` list serves
Pure data: no I/O, nothing of routing or HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    base_url: str  # "" = the deployment must give one (local servers may run anywhere)
    key_env: str | None  # the vendor's usual variable; None = a local server that needs no key
    headers: dict[str, str] = field(default_factory=dict)
    stream_options: bool = True
    usage_at: str | None = None
    cached_field: str | None = None
    seed_field: str = "seed"
    discover: bool = True
    models: tuple[str, ...] = ()  # what a deployment serves when it names none and cannot discover

    @property
    def local(self) -> bool:
        return self.key_env is None


PRESETS: Final[dict[str, Preset]] = {p.name: p for p in (
    Preset("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY", usage_at="x_groq.usage"),
    Preset("together", "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    Preset("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY", cached_field="prompt_cache_hit_tokens",
           models=("deepseek-chat", "deepseek-reasoner")),
    Preset("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY", stream_options=False,
           seed_field="random_seed"),
    Preset("fireworks", "https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"),
    Preset("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY",
           headers={"http-referer": "https://github.com/Tekton/rhetor", "x-title": "Rhetor"}),
    Preset("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
    Preset("perplexity", "https://api.perplexity.ai", "PERPLEXITY_API_KEY", discover=False,
           models=("sonar", "sonar-pro", "sonar-reasoning", "sonar-reasoning-pro", "sonar-deep-research")),
    Preset("vllm", "http://localhost:8000/v1", None),
    Preset("llama.cpp", "http://localhost:8080/v1", None),
    Preset("lm-studio", "http://localhost:1234/v1", None),
)}
ALIASES: Final = {"llamacpp": "llama.cpp", "llama-cpp": "llama.cpp", "lmstudio": "lm-studio", "grok": "xai",
                  "together-ai": "together"}


def preset(name: str) -> Preset | None:
    key = name.strip().lower()
    return PRESETS.get(ALIASES.get(key, key))


__all__ = ["ALIASES", "PRESETS", "Preset", "preset"]
