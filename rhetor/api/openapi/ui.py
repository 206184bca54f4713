"""OpenAPI declarations of the dashboard's routes (rhetor.ui.routes): the page, its static files and the
features list it reads. They check the key themselves (a browser's page load carries no header: a cookie set by
the sign-in page works too). Declarations only.
"""

from __future__ import annotations

from rhetor.api.openapi.common import NATIVE, Op, Open, Param, Resp, resp, text

TAG = "dashboard"
HTML = "text/html"


class Features(Open):
    """`{name: path | null}`: the optional endpoints this Rhetor serves, for the page."""

    metrics: str | None = None
    usage: str | None = None
    budgets: str | None = None
    assignments: str | None = None


_PAGE: dict[int | str, Resp] = {
    200: text("The dashboard", HTML), 401: text("The sign-in page (keys are configured)", HTML),
    413: resp("Request body too large", *NATIVE)}

OPS = [
    *(Op("GET", path, "The dashboard", TAG, _PAGE) for path in ("/ui", "/ui/")),
    Op("GET", "/ui/features.json", "The optional endpoints the page may call", TAG,
       {200: resp("Features", Features), 401: resp("A key is needed", *NATIVE), 413: resp("Too large", *NATIVE)}),
    Op("GET", "/ui/static/{name}", "A static file of the dashboard (script, styles, vendored uPlot)", TAG,
       {200: Resp("The file", (), "*/*", schema={"type": "string"}), 304: Resp("Not modified (ETag)"),
        401: resp("A key is needed", *NATIVE), 404: resp("No such file", *NATIVE), 413: resp("Too large", *NATIVE)},
       params=(Param("name", "path", "A file name", required=True),)),
]

__all__ = ["OPS"]
