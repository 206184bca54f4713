"""The dashboard's HTTP side (issue 10 item 5), over real HTTP: `/ui` serves the page and its files from the
package, offline (no other origin named anywhere), with a strict CSP; the optional endpoints it may call; and the
key guard: with keys configured, no page without a key (a sign-in form instead), a key as header or as the
sign-in cookie opens it, a wrong one does not, and the API behind it stays guarded. The browser side is
tests/test_ui_browser.py."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from rhetor.settings import Settings
from rhetor.ui.routes import ASSETS, STATIC

ROOT = Path(__file__).resolve().parents[1]


def test_page_and_assets_are_served_with_their_types_and_a_csp(simulated_rhetor: str) -> None:
    page = httpx.get(f"{simulated_rhetor}/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for src in re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', page.text):
        r = httpx.get(f"{simulated_rhetor}{src}")
        assert r.status_code == 200, src
        assert r.headers["content-type"].split(";")[0] in ("text/javascript", "text/css", "image/svg+xml"), src
        again = httpx.get(f"{simulated_rhetor}{src}", headers={"if-none-match": r.headers["etag"]})
        assert again.status_code == 304  # unchanged files are not sent again
    assert httpx.get(f"{simulated_rhetor}/ui/").status_code == 200
    assert httpx.get(f"{simulated_rhetor}/ui/static/nope.js").status_code == 404
    assert httpx.get(f"{simulated_rhetor}/ui/static/login.html").status_code == 404  # pages only at /ui


def test_nothing_is_fetched_from_another_origin() -> None:
    """Rhetor runs offline: no CDN, no font service, no absolute URL in what the page loads."""
    for name in ("index.html", "login.html", "app.js", "app.css", "login.js"):
        text = (STATIC / name).read_text()
        assert not re.search(r"(?:src|href)=\"(?:https?:)?//", text), name
        assert "fetch(\"http" not in text and "@import" not in text, name
    assert (STATIC / "vendor" / "uPlot.LICENSE").read_text().startswith("The MIT License")


def test_static_files_ship_as_package_data() -> None:
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["rhetor"]
    for name in ASSETS:
        path = f"ui/static/{name}"
        assert any(fnmatch.fnmatch(path, g) and path.count("/") == g.count("/") for g in globs), path


def test_features_name_only_endpoints_this_rhetor_serves(simulated_rhetor: str) -> None:
    features = httpx.get(f"{simulated_rhetor}/ui/features.json").json()
    assert features["usage"] == "/api/v1/usage" and features["assignments"] == "/api/models/assignments"
    assert features["metrics"] in ("/api/v1/metrics", "/api/metrics")
    for path in filter(None, features.values()):
        assert httpx.get(f"{simulated_rhetor}{path}").status_code == 200, path


@pytest.fixture
def keyed(make_settings: Callable[..., Any], rhetor: Any) -> Any:
    with rhetor(make_settings(api_keys=(SecretStr("sk-caller-1"), SecretStr("sk-ops 2")))) as url:
        yield url


def test_with_keys_the_page_wants_one(keyed: str) -> None:
    r = httpx.get(f"{keyed}/ui")
    assert r.status_code == 401 and 'id="login-form"' in r.text and "Rhetor" in r.text
    assert "sk-caller" not in r.text
    assert httpx.get(f"{keyed}/ui/static/login.js").status_code == 200  # what the sign-in form needs
    assert httpx.get(f"{keyed}/ui/static/app.js").status_code == 401
    assert httpx.get(f"{keyed}/ui/features.json").status_code == 401
    assert httpx.get(f"{keyed}/ui", cookies={"rhetor_ui_key": "sk-wrong"}).status_code == 401
    assert httpx.get(f"{keyed}/ui", headers={"x-api-key": "sk-wrong"}).status_code == 401


def test_a_key_as_header_or_sign_in_cookie_opens_it(keyed: str) -> None:
    page = httpx.get(f"{keyed}/ui", headers={"authorization": "Bearer sk-caller-1"})
    assert page.status_code == 200 and 'id="view-playground"' in page.text
    cookie = httpx.get(f"{keyed}/ui", cookies={"rhetor_ui_key": "sk-ops%202"})  # login.js encodes it
    assert cookie.status_code == 200 and 'id="view-overview"' in cookie.text
    assert httpx.get(f"{keyed}/ui/static/app.js", cookies={"rhetor_ui_key": "sk-caller-1"}).status_code == 200


def test_the_api_behind_the_page_stays_guarded(keyed: str) -> None:
    assert httpx.get(f"{keyed}/api/v1/providers", cookies={"rhetor_ui_key": "sk-caller-1"}).status_code == 401
    assert httpx.get(f"{keyed}/api/v1/providers",
                     headers={"authorization": "Bearer sk-caller-1"}).status_code == 200
    assert httpx.get(f"{keyed}/uix").status_code in (401, 404)  # nothing else rides on the /ui exemption


@pytest.mark.skipif("admin_key" not in Settings.model_fields, reason="RHETOR_ADMIN_KEY lands with the governance work")
def test_the_admin_key_opens_it(make_settings: Callable[..., Any], rhetor: Any) -> None:
    with rhetor(make_settings(admin_key=SecretStr("sk-admin-9"))) as url:
        assert httpx.get(f"{url}/ui").status_code == 401
        assert httpx.get(f"{url}/ui", headers={"x-api-key": "sk-admin-9"}).status_code == 200
