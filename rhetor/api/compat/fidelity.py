"""What the OpenAI and Anthropic chat fronts share for lossless forwarding (rhetor.providers.fidelity): the vendor
headers a same-vendor upstream is given, lenient mode, the headers that say what happened (`x-rhetor-passthrough`,
`x-rhetor-dropped-fields`), each API's usage object with cache and reasoning figures, and relaying the upstream's
own stream when it spoke the front's API.

Knows the gateway's stream types and `Passthrough`, never providers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request

from rhetor.api import streaming
from rhetor.api.compat.common import header_dict
from rhetor.api.state import gateway
from rhetor.errors import InvalidRequestError
from rhetor.gateway import StreamSession
from rhetor.types import Image, Passthrough, RawFrame, StreamError, StreamEvent, Usage

# front -> request headers a same-vendor upstream is given as sent
VENDOR_HEADERS: dict[str, tuple[str, ...]] = {
    "openai": ("openai-beta",),
    "anthropic": ("anthropic-beta", "anthropic-version"),
}
ORG_HEADERS = ("openai-organization", "openai-project")  # only with RHETOR_FORWARD_OPENAI_ORG=1
_ENCODED = {api: tuple((name, name.encode()) for name in names)
            for api, names in [*VENDOR_HEADERS.items(), ("org", ORG_HEADERS)]}


def passthrough(request: Request, api: str, body: dict[str, Any], system: str | None,
                parts: list[str]) -> Passthrough:
    settings = gateway(request).settings
    names = _ENCODED[api] + (_ENCODED["org"] if api == "openai" and settings.forward_openai_org else ())
    found = header_dict(request)  # one dict, read inline (no comprehension or `header` call per name)
    headers: dict[str, str] = {}
    for name, raw in names:
        value = found.get(raw)
        if value:
            headers[name] = value.decode("latin-1")
    if api == "anthropic" and "anthropic-beta" in headers:
        parts = [*parts, "anthropic-beta header"]  # only Anthropic can honour a beta; refused elsewhere
    flag = found.get(b"x-rhetor-lenient")
    lenient = (flag is not None and flag.decode("latin-1").strip().lower() in ("1", "true", "yes")) \
        or settings.lenient_fields
    # positionally, in Passthrough's field order (api, body, headers, system, parts, lenient, dropped, forward)
    return Passthrough(api, body, headers, system, parts, lenient, [], settings.passthrough)  # type: ignore[arg-type]


def fidelity_header_list(pt: Passthrough, relayed: bool) -> list[tuple[bytes, bytes]]:
    """`x-rhetor-passthrough` and, lenient, `x-rhetor-dropped-fields`, encoded."""
    out = [(b"x-rhetor-passthrough", b"true" if relayed else b"false")]
    if pt.dropped:
        out.append((b"x-rhetor-dropped-fields", ",".join(pt.dropped).encode("latin-1")))
    return out


def fidelity_headers(pt: Passthrough, relayed: bool) -> dict[str, str]:
    return {k.decode(): v.decode("latin-1") for k, v in fidelity_header_list(pt, relayed)}


def session_relays(first: StreamEvent | None) -> bool:
    return isinstance(first, RawFrame)


class Relay(streaming.Relay):
    """The upstream's own events as received (each RawFrame's bytes); a failure after commit is `error_frame(event)`
    and the end. Sent by ClosingStreamingResponse directly (rhetor.api.streaming.Relay)."""

    __slots__ = ("error_frame",)

    def __init__(self, first: RawFrame, source: AsyncIterator[StreamEvent], error_frame: Any) -> None:
        super().__init__(source, first.data)
        self.error_frame = error_frame

    def chunk(self, event: Any) -> bytes | None:
        if isinstance(event, RawFrame):
            return event.data
        if isinstance(event, StreamError):
            self.over = True
            frame: bytes = self.error_frame(event)
            return frame
        return None


async def prepended(first: StreamEvent | None, source: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
    try:
        if first is not None:
            yield first
        async for event in source:
            yield event
    finally:
        await _aclose(source)


async def _aclose(source: AsyncIterator[StreamEvent]) -> None:
    close = getattr(source, "aclose", None)
    if close is not None:
        await close()


async def first_event(session: StreamSession) -> tuple[StreamEvent | None, AsyncIterator[StreamEvent]]:
    """The stream's first event (already fetched by the fallback runner, so this does not wait) and the rest."""
    source = session.events()
    return await anext(source, None), source


def openai_image(part: dict[str, Any], where: str) -> Image:
    """An `image_url` content part (a URL or a base64 data URL) as an Image."""
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str) or not url:
        raise InvalidRequestError(f"{where}.image_url.url is required", param=f"{where}.image_url.url")
    if url.startswith("data:"):
        head, _, data = url[5:].partition(",")
        if not head.endswith(";base64") or not data:
            raise InvalidRequestError(f"{where}: a data URL must be base64 (data:image/png;base64,...)", param=where)
        return Image(data=data, media_type=head.removesuffix(";base64") or "image/png", where=where)
    return Image(url=url, where=where)


def anthropic_image(block: dict[str, Any], where: str) -> Image:
    """An `image` block (base64 or url source) as an Image."""
    raw = block.get("source")
    source: dict[str, Any] = raw if isinstance(raw, dict) else {}
    if source.get("type") == "base64" and isinstance(source.get("data"), str):
        return Image(data=source["data"], media_type=str(source.get("media_type") or "image/png"), where=where)
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return Image(url=source["url"], where=where)
    raise InvalidRequestError(f"{where}.source: a base64 or url image source is required", param=f"{where}.source")


def openai_usage(u: Usage) -> dict[str, Any]:
    return {"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens, "total_tokens": u.total_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens},
            "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens}}


def anthropic_usage(u: Usage) -> dict[str, Any]:
    """Anthropic counts cache reads and writes apart from input_tokens (the normalized Usage counts them in it)."""
    fresh = max(0, u.input_tokens - u.cached_input_tokens - u.cache_write_tokens)
    return {"input_tokens": fresh, "output_tokens": u.output_tokens,
            "cache_read_input_tokens": u.cached_input_tokens, "cache_creation_input_tokens": u.cache_write_tokens}


__all__ = [
    "Relay",
    "anthropic_image",
    "anthropic_usage",
    "fidelity_header_list",
    "fidelity_headers",
    "first_event",
    "openai_image",
    "openai_usage",
    "passthrough",
    "prepended",
    "session_relays",
]
