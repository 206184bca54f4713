"""The OpenAPI document of every HTTP route on every front, declared per route family beside (not inside) the
route modules, which stay plain Starlette routes for speed. See builder.py. Knows no handlers.

`install(app)` costs nothing at start-up: the declarations (some sixty pydantic models, ~50 ms to import) load
and the document is built on the first request for /openapi.json or /docs.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    """`/openapi.json` and `/docs` serve the built document (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from rhetor.api.openapi.builder import build

            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["install"]
