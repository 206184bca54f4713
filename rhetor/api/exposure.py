"""Bind and caller policy: who counts as a loopback caller, whether the bind is exposed without any
authentication, who may POST /shutdown, and whether a /health caller may see process details.

- Loopback is 127.0.0.0/8, ::1 and their IPv4-mapped forms (`ipaddress.is_loopback`).
- Forwarded headers are believed only from RHETOR_TRUSTED_PROXIES (uvicorn's proxy_headers is off otherwise, see
  rhetor.cli); a request that carries them without a trusted proxy was relayed for someone else, so it is not
  a loopback caller, whatever its socket says.
- A non-loopback bind with neither RHETOR_API_KEYS nor RHETOR_SHUTDOWN_TOKEN is warned about at start and
  refuses /shutdown to everyone (set a token to allow it).
Knows Settings and Starlette requests; nothing of the gateway or providers.
"""

from __future__ import annotations

import hmac
import ipaddress

from starlette.requests import Request
from starlette.responses import Response

from rhetor.api.presented import digest, key_matches, presented_key
from rhetor.api.responses import json_response
from rhetor.settings import Settings

FORWARDING_HEADERS = (b"x-forwarded-for", b"forwarded", b"x-real-ip")


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False  # a name other than localhost: it may resolve anywhere
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.x.y.z (not is_loopback before Python 3.13)
    return ip.is_loopback


def exposed_without_auth(settings: Settings) -> bool:
    """Bound beyond loopback with no caller keys and no shutdown token."""
    return not is_loopback(settings.host) and not settings.api_keys and settings.shutdown_token is None


def exposure_warning(settings: Settings) -> str:
    return (f"SECURITY: Rhetor is bound to {settings.host} (not loopback) with neither RHETOR_API_KEYS nor "
            "RHETOR_SHUTDOWN_TOKEN set: anyone who can reach this port can use it; POST /shutdown is refused "
            "until RHETOR_SHUTDOWN_TOKEN is set")


def forwarded(request: Request) -> bool:
    return any(name in FORWARDING_HEADERS for name, _ in request.scope.get("headers", ()))


def shutdown_refusal(request: Request, settings: Settings) -> Response | None:
    """None if `request` may shut Rhetor down, else the 401/403 to answer."""
    token = settings.shutdown_token
    if token is not None:
        given = request.headers.get("x-shutdown-token") or ""
        auth = request.headers.get("authorization", "")
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:]
        if hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
            return None
        return _refuse(401, "unauthorized", "shutdown needs the token set in RHETOR_SHUTDOWN_TOKEN "
                                            "(header X-Shutdown-Token)")
    if exposed_without_auth(settings):
        return _refuse(403, "forbidden", f"shutdown is refused: Rhetor is bound to {settings.host} (not loopback) "
                                         "without RHETOR_API_KEYS or RHETOR_SHUTDOWN_TOKEN; set "
                                         "RHETOR_SHUTDOWN_TOKEN to allow it")
    if not settings.trusted_proxies and forwarded(request):
        return _refuse(403, "forbidden", "shutdown is refused: the request came through a proxy that is not in "
                                         "RHETOR_TRUSTED_PROXIES (or set RHETOR_SHUTDOWN_TOKEN)")
    if not is_loopback(request.client.host if request.client else None):
        return _refuse(403, "forbidden", "shutdown is accepted from loopback callers only "
                                         "(set RHETOR_SHUTDOWN_TOKEN to allow others)")
    return None


def may_see_details(request: Request, settings: Settings) -> bool:
    """/health shows the pid and per-provider metrics to everyone when Rhetor has no caller keys, else only to
    a caller presenting one."""
    if not settings.api_keys:
        return True
    digests = tuple(digest(k.get_secret_value().encode("utf-8")) for k in settings.api_keys)
    return key_matches(presented_key(request.scope.get("headers", ())), digests)


def _refuse(status: int, kind: str, message: str) -> Response:
    return json_response({"error": {"type": kind, "message": message}}, status)


__all__ = ["exposed_without_auth", "exposure_warning", "forwarded", "is_loopback", "may_see_details",
           "shutdown_refusal"]
