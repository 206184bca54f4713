"""The dashboard's routes: `GET /ui` (the page) and `GET /ui/static/<file>` (its script, styles and the vendored
uPlot), served from the package's static files, read once and kept in memory (about 80 KB). No build step, no
CDN: Rhetor runs offline.

Guarded by a key when keys are configured (RHETOR_API_KEYS, or an admin key RHETOR_ADMIN_KEY when the settings
carry one): a browser's navigation carries no header, so besides `Authorization: Bearer` / `x-api-key` the key
may come as the `rhetor_ui_key` cookie that the sign-in page sets (path /ui, SameSite=Strict). Without it the
page answers 401 with a sign-in form; the API calls the page makes send the key as a Bearer header, through
the usual API key check. The paths under /ui are exempt from that middleware (rhetor.api.auth), which is why
this module checks the key itself. Knows the settings' keys, nothing of the gateway or the API's handlers:
the page talks only to the public API.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from rhetor.api.presented import digest, key_matches, presented_key

STATIC = Path(__file__).parent / "static"
COOKIE = "rhetor_ui_key"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}
PUBLIC = frozenset({"login.js", "app.css", "favicon.svg"})  # what the sign-in page itself needs; no data in either
# The page loads only its own files and talks only to this origin.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
HEADERS = {"cache-control": "no-cache", "content-security-policy": CSP, "x-content-type-options": "nosniff",
           "referrer-policy": "no-referrer"}


class _Asset:
    __slots__ = ("body", "etag", "media_type")

    def __init__(self, path: Path) -> None:
        self.body = path.read_bytes()
        self.media_type = TYPES.get(path.suffix, "application/octet-stream")
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


def _load() -> dict[str, _Asset]:
    return {p.relative_to(STATIC).as_posix(): _Asset(p) for p in sorted(STATIC.rglob("*")) if p.is_file()}


ASSETS = _load()


def _digests(request: Request) -> tuple[bytes, ...]:
    """Digests of the keys that open the dashboard; empty when none are configured (an open Rhetor)."""
    cached: tuple[bytes, ...] | None = getattr(request.app.state, "ui_key_digests", None)
    if cached is not None:
        return cached
    runtime: Any = getattr(request.app.state, "runtime", None)
    settings: Any = getattr(runtime, "settings", None)
    keys = [k.get_secret_value() for k in getattr(settings, "api_keys", ())]
    admin = getattr(settings, "admin_key", None)
    if admin is not None:
        keys.append(admin.get_secret_value() if hasattr(admin, "get_secret_value") else str(admin))
    digests = tuple(digest(k.encode("utf-8")) for k in keys if k)
    request.app.state.ui_key_digests = digests
    return digests


def _allowed(request: Request) -> bool:
    digests = _digests(request)
    if not digests:
        return True
    if key_matches(presented_key(request.scope.get("headers", [])), digests):
        return True
    cookie = unquote(request.cookies.get(COOKIE) or "")  # login.js sets it encodeURIComponent'ed
    return bool(cookie) and key_matches(cookie.encode("utf-8"), digests)


def _send(request: Request, asset: _Asset, status: int = 200) -> Response:
    if status == 200 and request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers={"etag": asset.etag, **HEADERS})
    return Response(asset.body, status_code=status, media_type=asset.media_type,
                    headers={"etag": asset.etag, **HEADERS})


def _refused(request: Request, html: bool) -> Response:
    if html:  # a person: the sign-in form, which sets the cookie and comes back
        return _send(request, ASSETS["login.html"], 401)
    return Response(b'{"error":{"type":"authentication_error","message":"the dashboard needs a key: sign in at /ui"}}',
                    status_code=401, media_type="application/json", headers=HEADERS)


async def page(request: Request) -> Response:
    if not _allowed(request):
        return _refused(request, html=True)
    return _send(request, ASSETS["index.html"])


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    found = ASSETS.get(name)
    if found is None or name.endswith(".html"):
        return Response(b'{"error":{"type":"not_found","message":"no such dashboard file"}}', status_code=404,
                        media_type="application/json")
    if name not in PUBLIC and not _allowed(request):
        return _refused(request, html=False)
    return _send(request, found)


# Optional endpoints the page uses when this Rhetor has them, so it never asks for a route that is not there
# (a 404 is a console error in the browser): the first path of each list that the app serves.
OPTIONAL = {"metrics": ("/api/v1/metrics", "/api/metrics"), "usage": ("/api/v1/usage",),
            "budgets": ("/api/v1/budgets",), "assignments": ("/api/models/assignments",)}


async def features(request: Request) -> Response:
    """What the page may call here: `{name: path | null}` for the optional endpoints, from the app's routes."""
    if not _allowed(request):
        return _refused(request, html=False)
    paths = {getattr(r, "path", None) for r in request.app.routes}
    found = {name: next((p for p in options if p in paths), None) for name, options in OPTIONAL.items()}
    return JSONResponse(found, headers=HEADERS)


routes: list[BaseRoute] = [
    Route("/ui/features.json", features, methods=["GET"]),
    Route("/ui", page, methods=["GET"]),
    Route("/ui/", page, methods=["GET"]),
    Route("/ui/static/{name:path}", asset, methods=["GET"]),
]

__all__ = ["ASSETS", "COOKIE", "routes"]
