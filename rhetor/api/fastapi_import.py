"""FastAPI, imported with its OpenAPI models built on first use instead of at import.

`import fastapi` defines some forty pydantic models describing an OpenAPI document (fastapi.openapi.models) and
builds their validators at once, three of them explicitly (`model_rebuild`). Deferred, Rhetor's start-up ran
1,982M -> 1,765M instructions (-11%, `benchmarks/lean.py startup --instructions`). Rhetor's routes are plain
Starlette routes and its OpenAPI document is built on the first request for /openapi.json or /docs
(rhetor.api.openapi), where those models are first used: that request builds them too, +53M instructions
(595M -> 648M, ~25 ms, callgrind of the first `app.openapi()`). The document is the same, byte for byte.

`load()` imports FastAPI with pydantic's `defer_build` default on and `model_rebuild` a no-op, for the duration of
that import only (a model used during it is built as usual); both are restored after it. If FastAPI is already
imported, or pydantic's internals have moved, it is a plain import. Knows nothing of Rhetor.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel


def load() -> None:
    if "fastapi" in sys.modules:
        return
    from pydantic import BaseModel
    from pydantic._internal import _config

    defaults: dict[str, Any] = _config.config_defaults  # type: ignore[assignment]
    rebuild = BaseModel.__dict__.get("model_rebuild")
    if "defer_build" not in defaults or not isinstance(rebuild, classmethod):
        import fastapi  # pydantic changed: an ordinary import

        return
    before = defaults["defer_build"]
    defaults["defer_build"] = True

    def deferred(cls: type[BaseModel], /, **kwargs: Any) -> bool | None:
        """FastAPI's own `Model.model_rebuild()` calls: nothing now. A model used during the import (a default
        value) is built by pydantic as usual, through `model_rebuild(raise_errors=False, ...)`."""
        return rebuild.__func__(cls, **kwargs) if kwargs else None

    setattr(BaseModel, "model_rebuild", classmethod(deferred))  # noqa: B010
    try:
        import fastapi  # noqa: F401
    finally:
        defaults["defer_build"] = before
        setattr(BaseModel, "model_rebuild", rebuild)  # noqa: B010


__all__ = ["load"]
