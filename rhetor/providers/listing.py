"""Live model listings: what each configured provider or deployment actually serves, for `/v1/models`,
`/api/v1/models` and `python -m rhetor providers`.

One fetch function per wire kind reads the vendor's own listing (OpenAI and OpenAI-compatible `GET /models`,
Anthropic `GET /v1/models` paged by `after_id`, Ollama `GET /api/tags`, Gemini `GET /v1/models` paged by
`pageToken`). `LiveModels` wraps one of them: nothing is fetched before the first listing request; a fetch is
bounded by a timeout, shared by every concurrent caller, and its result cached for a TTL. A failed fetch is
cached too (for `FAILURE_TTL_S` at most, so a dead upstream is not hammered) and the listing falls back to the
catalogue and says so (`source="fallback"` with the reason; logged once per failed fetch — a warning, or info
when nothing listens, such as an Ollama never started — never with a key).

Request validation never reads this: it keeps `Provider.models()`, which needs no network. Knows vendor listing
shapes; knows nothing of routing, callers' wire formats or the web layer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable
from urllib.parse import quote

from rhetor.errors import ProviderError, UpstreamConnectError, UpstreamProtocolError

if TYPE_CHECKING:
    from rhetor.catalog import Catalog
    from rhetor.providers import Providers
    from rhetor.providers.base import Provider
    from rhetor.providers.http import HttpUpstream
    from rhetor.settings import Settings

log = logging.getLogger("rhetor.providers.listing")

Source = Literal["live", "catalogue", "fallback", "configured"]
FAILURE_TTL_S = 30.0  # a failed fetch is remembered this long at most (never longer than the TTL itself)
MAX_PAGES = 20  # a paged listing stops here: bounded however the upstream pages
PAGE_LIMIT = 1000  # Anthropic's largest page


@dataclass(frozen=True, slots=True)
class Listing:
    """The models one provider lists, and where the list came from.

    `live`: the upstream's own listing (fresh or cached); `catalogue`: the provider has no live listing
    (simulated, no key); `fallback`: the live listing failed or timed out, so this is the catalogue and
    `reason` says why; `configured`: a deployment that names its models in the providers file."""

    models: tuple[str, ...]
    source: Source
    reason: str = ""


@runtime_checkable
class ModelLister(Protocol):
    """An optional capability: a provider that can list its models live (or say why not)."""

    async def listed_models(self) -> Listing: ...


Fetch = Callable[["HttpUpstream"], Awaitable[list[str]]]
Catalogue = Callable[[], Awaitable[list[str]]]


class LiveModels:
    """One provider's live listing: lazy, timed out, cached for `ttl_s`, one fetch in flight at a time."""

    def __init__(self, http: HttpUpstream, fetch: Fetch, catalogue: Catalogue, settings: Settings, *,
                 disabled: str = "", drop: Callable[[str], bool] | None = None) -> None:
        """`disabled` is "" when a live listing may be fetched, else why not (no key): the catalogue answers.
        `drop` says a listed id is retired in the catalogue: a request for it is refused, so it is never listed."""
        self._http = http
        self._fetch = fetch
        self._catalogue = catalogue
        self._ttl = settings.models_cache_s
        self._timeout = settings.models_discovery_timeout_s
        self._disabled = disabled
        self._drop = drop
        self._value: Listing | None = None
        self._until = 0.0
        self._inflight: asyncio.Task[Listing] | None = None
        self.fetches = 0  # upstream listings started (tests and `providers` read it)

    async def get(self) -> Listing:
        if self._disabled:
            return Listing(tuple(await self._catalogue()), "catalogue", self._disabled)
        if self._value is not None and time.monotonic() < self._until:
            return self._value
        if self._inflight is None:
            self._inflight = asyncio.create_task(self._refresh())
        # shielded: a caller that gives up does not cancel the fetch the others wait for
        return await asyncio.shield(self._inflight)

    def cached(self) -> Listing | None:
        """The cached listing, if any, without fetching."""
        return self._value if self._value is not None and time.monotonic() < self._until else None

    async def _refresh(self) -> Listing:
        self.fetches += 1
        try:
            try:
                async with asyncio.timeout(self._timeout):
                    ids = await self._fetch(self._http)
            except TimeoutError:
                return await self._failed(f"the listing timed out after {self._timeout:g} s")
            except UpstreamConnectError as exc:  # nothing listening (an Ollama never started): not worth a warning
                return await self._failed(exc.message, logging.INFO)
            except ProviderError as exc:
                return await self._failed(exc.message)
            drop = self._drop
            listing = Listing(tuple(m for m in dict.fromkeys(ids) if drop is None or not drop(m)), "live")
            self._keep(listing, self._ttl)
            return listing
        finally:
            self._inflight = None

    async def _failed(self, why: str, level: int = logging.WARNING) -> Listing:
        log.log(level, "live model listing of %s failed (%s): listing the catalogue instead", self._http.provider,
                why)
        listing = Listing(tuple(await self._catalogue()), "fallback", why)
        self._keep(listing, min(self._ttl, FAILURE_TTL_S))
        return listing

    def _keep(self, listing: Listing, ttl: float) -> None:
        self._value, self._until = listing, time.monotonic() + ttl


def from_catalogue(http: HttpUpstream, fetch: Fetch, catalog: Catalog, provider: str, settings: Settings, *,
                   disabled: str = "") -> LiveModels:
    """A vendor provider's listing: its live list minus what the catalogue retired, else the catalogue's."""
    async def catalogue() -> list[str]:
        return catalog.models(provider)

    def retired(model: str) -> bool:
        entry = catalog.entry(provider, model)
        return entry is not None and entry.status == "retired"

    return LiveModels(http, fetch, catalogue, settings, disabled=disabled, drop=retired)


async def listing_of(provider: Provider) -> Listing:
    """A provider's listing: live when it can list, else its catalogue list."""
    if isinstance(provider, ModelLister):
        return await provider.listed_models()
    return Listing(tuple(await provider.models()), "catalogue", "no live listing for this provider")


async def listed_models(providers: Providers) -> dict[str, Listing]:
    """Every provider's and deployment's listing, fetched concurrently (each bounded by its own timeout)."""
    names = providers.names()
    found = await asyncio.gather(*(listing_of(providers.get(n)) for n in names))
    return dict(zip(names, found, strict=True))


def source_headers(listings: dict[str, Listing]) -> dict[str, str]:
    """`x-rhetor-models-source: name=live, …` always; `x-rhetor-models-fallback: name, …` when any fell back."""
    headers = {"x-rhetor-models-source": ", ".join(f"{n}={lst.source}" for n, lst in listings.items())}
    fell = [n for n, lst in listings.items() if lst.source == "fallback"]
    if fell:
        headers["x-rhetor-models-fallback"] = ", ".join(fell)
    return headers


# --- one fetch per wire kind: the vendor's listing shape in, model ids out -------------------------------------

def _items(data: Any, key: str) -> list[Any]:
    items = data.get(key) if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise UpstreamProtocolError(f"the model listing has no {key!r} list")
    return items


def openai_ids(data: Any) -> list[str]:
    """`{object:"list", data:[{id, object:"model", created, owned_by}]}`."""
    return [str(m["id"]) for m in _items(data, "data") if isinstance(m, dict) and m.get("id")]


def anthropic_ids(data: Any) -> list[str]:
    """One page of `{data:[{type:"model", id, display_name, created_at}], has_more, first_id, last_id}`."""
    return openai_ids(data)


def ollama_ids(data: Any) -> list[str]:
    """`{models:[{name, model, modified_at, size, digest, details}]}`."""
    return [str(m.get("name") or m.get("model")) for m in _items(data, "models")
            if isinstance(m, dict) and (m.get("name") or m.get("model"))]


def gemini_ids(data: Any) -> list[str]:
    """`{models:[{name:"models/…", supportedGenerationMethods:[…]}], nextPageToken}`: the ones that chat."""
    out: list[str] = []
    if isinstance(data, dict) and "models" not in data:
        return out  # an empty page carries no `models` key at all
    for m in _items(data, "models"):
        if not isinstance(m, dict) or not isinstance(m.get("name"), str):
            continue
        methods = m.get("supportedGenerationMethods")
        if isinstance(methods, list) and "generateContent" not in methods:
            continue  # embedding-only and other non-chat models
        out.append(m["name"].removeprefix("models/"))
    return out


async def fetch_openai(http: HttpUpstream) -> list[str]:
    return openai_ids(await http.request_json("GET", "/models"))


async def fetch_ollama(http: HttpUpstream) -> list[str]:
    return ollama_ids(await http.request_json("GET", "/api/tags"))


async def fetch_anthropic(http: HttpUpstream) -> list[str]:
    """Pages of `{data:[{type:"model", id, display_name, created_at}], has_more, first_id, last_id}`."""
    out: list[str] = []
    after = ""
    for _ in range(MAX_PAGES):
        path = f"/v1/models?limit={PAGE_LIMIT}" + (f"&after_id={quote(after, safe='')}" if after else "")
        data = await http.request_json("GET", path)
        out += anthropic_ids(data)
        last = data.get("last_id")
        if not data.get("has_more") or not isinstance(last, str) or not last or last == after:
            break
        after = last
    return out


async def fetch_gemini(http: HttpUpstream, api: str = "/v1/models") -> list[str]:
    """Pages of `{models:[…], nextPageToken}` (an empty page has no `models` at all)."""
    out: list[str] = []
    token = ""
    for _ in range(MAX_PAGES):
        data = await http.request_json("GET", f"{api}?pageSize=1000" + (f"&pageToken={quote(token, safe='')}"
                                                                        if token else ""))
        out += gemini_ids(data)
        nxt = data.get("nextPageToken") if isinstance(data, dict) else None
        if not isinstance(nxt, str) or not nxt or nxt == token:
            break
        token = nxt
    return out


__all__ = ["FAILURE_TTL_S", "Listing", "LiveModels", "ModelLister", "anthropic_ids", "fetch_anthropic", "fetch_gemini",
           "fetch_ollama", "fetch_openai", "from_catalogue", "gemini_ids", "listed_models", "listing_of",
           "ollama_ids", "openai_ids", "source_headers"]
