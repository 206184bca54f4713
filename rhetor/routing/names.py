"""Which provider serves a bare model name: `gpt-4o-mini` is OpenAI's, `claude-3-5-haiku-latest` Anthropic's,
`gemini-3.8-flash` Gemini's, `llama3` or `qwen2:7b` Ollama's, `simulated-fast` the simulated provider's. Pure name
patterns, no I/O.

The router uses it when a request names a model without a provider (`model_id`, or the top-level `model` of
Tekton's 2025 rhetor_client), so the model runs where it exists instead of on the route's provider; the
compat fronts use the same table for their bare names. Knows provider *names* only, never provider classes,
live model lists or HTTP.
"""

from __future__ import annotations

from typing import Final

from rhetor.errors import UnknownProviderError
from rhetor.providers import canonical

# (name prefixes, provider), first match wins; compared lower-cased.
BARE_PREFIXES: Final[tuple[tuple[tuple[str, ...], str], ...]] = (
    (("claude-",), "anthropic"),
    (("gpt-", "o1", "o3", "o4", "chatgpt-", "text-embedding-", "davinci", "babbage"), "openai"),
    (("gemini-",), "gemini"),
    (("simulated-",), "simulated"),
)
# Model families published in the Ollama library (https://ollama.com/library); a `name:tag` is Ollama's too.
OLLAMA_FAMILIES: Final = (
    "llama", "codellama", "tinyllama", "llava", "mistral", "mixtral", "codestral", "qwen", "gemma", "codegemma",
    "phi", "deepseek", "starcoder", "nomic-embed", "mxbai-embed", "all-minilm", "vicuna", "orca", "neural-chat",
    "command-r", "granite", "smollm", "nous-hermes", "wizard", "dolphin", "openchat", "yi", "falcon", "olmo",
    "solar", "zephyr", "stablelm", "aya", "snowflake-arctic-embed", "bge-", "nemotron", "hermes3", "gpt-oss",
)


def provider_for_model(name: str) -> str | None:
    """The provider that serves the bare model `name`, or None when the name says nothing about it."""
    low = name.strip().lower()
    if low.startswith("gpt-oss"):  # OpenAI's open-weight models are served by Ollama, not OpenAI's API
        return "ollama"
    for prefixes, provider in BARE_PREFIXES:
        if low.startswith(prefixes):
            return provider
    if low.startswith(OLLAMA_FAMILIES) or (":" in low and "/" not in low):
        return "ollama"
    return None


def split_model(name: str) -> tuple[str | None, str]:
    """`provider/model` → (provider, model) when the head names a provider (or alias); else (None, name)."""
    head, sep, tail = name.partition("/")
    if sep and tail:
        try:
            return canonical(head), tail
        except UnknownProviderError:
            pass
    return None, name


__all__ = ["BARE_PREFIXES", "OLLAMA_FAMILIES", "provider_for_model", "split_model"]
