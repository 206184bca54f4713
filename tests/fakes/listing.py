"""The model listings the fakes serve, in each vendor's real shape: OpenAI's `GET /v1/models` (one page), Anthropic's
`GET /v1/models` (paged by `limit` / `after_id` / `before_id`, `has_more`, `first_id`, `last_id`), Gemini's
`GET /v1[beta]/models` (paged by `pageSize` / `pageToken`, `nextPageToken`) and Ollama's `GET /api/tags`.

Each fake owns one `ListingState`: tests read `requests` (listings served, every page counted), set `fail` (a
status every listing answers with), `delay` (seconds before each answer) or `page_cap` (the largest page served,
to force paging). Knows nothing of Rhetor.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs


@dataclass
class ListingState:
    requests: int = 0
    fail: int | None = None
    delay: float = 0.0
    page_cap: int = 1000
    queries: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    async def begin(self, scope: dict[str, Any] | Any) -> dict[str, list[str]]:
        """Count the request, wait `delay`; the parsed query string."""
        query = scope.get("query_string", b"").decode()
        with self._lock:
            self.requests += 1
            self.queries.append(query)
        if self.delay:
            await asyncio.sleep(self.delay)
        return parse_qs(query)


def _int(query: dict[str, list[str]], name: str, default: int) -> int:
    try:
        return int(query.get(name, [str(default)])[0])
    except ValueError:
        return default


def openai_list(models: list[str]) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": m, "object": "model", "created": 1715367049, "owned_by": "system"}
                                       for m in models]}


def anthropic_page(models: list[str], query: dict[str, list[str]], cap: int) -> dict[str, Any]:
    """Anthropic's ModelInfo pages: newest first, `limit` 1..1000 (default 20), `after_id` / `before_id`."""
    limit = max(1, min(_int(query, "limit", 20), 1000, cap))
    start, end = 0, len(models)
    if "after_id" in query and query["after_id"][0] in models:
        start = models.index(query["after_id"][0]) + 1
    if "before_id" in query and query["before_id"][0] in models:
        end = models.index(query["before_id"][0])
        start = max(start, end - limit)
    page = models[start:min(end, start + limit)]
    data = [{"type": "model", "id": m, "display_name": m.replace("-", " ").title(),
             "created_at": "2025-09-29T00:00:00Z"} for m in page]
    return {"data": data, "has_more": start + len(page) < end, "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None}


def gemini_page(models: list[str], query: dict[str, list[str]], cap: int) -> dict[str, Any]:
    """Gemini's ListModelsResponse: `pageSize` (default 50, at most 1000), `pageToken` the next offset."""
    size = max(1, min(_int(query, "pageSize", 50), 1000, cap))
    start = _int(query, "pageToken", 0)
    page = models[start:start + size]
    body: dict[str, Any] = {}
    if page:  # an empty page has no `models` key at all
        body["models"] = [{"name": f"models/{m}", "version": "001", "displayName": m, "inputTokenLimit": 1048576,
                           "outputTokenLimit": 65536,
                           "supportedGenerationMethods": (["embedContent"] if "embedding" in m else
                                                          ["generateContent", "countTokens"])} for m in page]
    if start + size < len(models):
        body["nextPageToken"] = str(start + size)
    return body


__all__ = ["ListingState", "anthropic_page", "gemini_page", "openai_list"]
