"""The OpenAPI document of every HTTP route on every front, declared per route family beside (not inside) the
route modules, which stay plain Starlette routes for speed. See builder.py. Knows no handlers.
"""

from rhetor.api.openapi.builder import build, install, undescribed, unserved

__all__ = ["build", "install", "undescribed", "unserved"]
