"""Tool-calling and embedding behaviour shared by the fake upstreams (each speaks its own wire around it).

A fake offered tools calls one — the named one if tool_choice names it, else the first — unless tool_choice
is none or the conversation's last turn already carries a tool result; then it answers in text that quotes
the result. Embeddings are small deterministic vectors (8 dims) so tests can compare them exactly.
Knows nothing of Rhetor.
"""

from __future__ import annotations

import hashlib
from typing import Any

EMBED_DIMS = 8


def choose_tool(names: list[str], forced: str | None, disabled: bool, answered: bool) -> str | None:
    if not names or disabled or answered:
        return None
    return forced if forced in names else names[0]


def split_json(text: str, parts: int = 3) -> list[str]:
    """`text` in `parts` roughly equal pieces (the way vendors stream tool arguments)."""
    size = max(1, -(-len(text) // parts))
    return [text[i : i + size] for i in range(0, len(text), size)]


def fake_vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round((b - 128) / 128, 6) for b in digest[:EMBED_DIMS]]


def quote_result(content: Any) -> str:
    if isinstance(content, list):
        content = "".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return f"The tool said: {content}"


__all__ = ["EMBED_DIMS", "choose_tool", "fake_vector", "quote_result", "split_json"]
