"""Heavy libraries imported on first use, so start-up does not pay for them: NumPy (~0.1-0.2 s of CPU and its
BLAS thread pool, before any vector is touched), aiohttp (with attrs, yarl and multidict, ~30% of start-up's
import time, before the first upstream request) and httpx (the Hermes and Engram clients, only when configured:
with its command-line extras rich, pygments and click installed, ~240M instructions, ~10% of start-up).

A module that needs NumPy only inside functions writes

    if TYPE_CHECKING:
        import numpy as np
    else:
        from rhetor.lazy import numpy as np

so mypy sees NumPy itself and the run time sees a `LazyModule` that imports it at the first attribute read and
then caches each attribute (later reads are plain attribute lookups). Type aliases built from NumPy types belong
under TYPE_CHECKING too (with `from __future__ import annotations` every annotation is a string). Knows nothing
of Rhetor.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands in for the module `name` until an attribute is read."""

    def __init__(self, name: str) -> None:
        self._lazy_name = name

    def __getattr__(self, attr: str) -> Any:  # only called for attributes not cached yet
        value = getattr(importlib.import_module(self._lazy_name), attr)
        setattr(self, attr, value)
        return value

    def __repr__(self) -> str:
        return f"<lazy module {self._lazy_name!r}>"


numpy = LazyModule("numpy")
aiohttp = LazyModule("aiohttp")
httpx = LazyModule("httpx")

__all__ = ["LazyModule", "aiohttp", "httpx", "numpy"]
