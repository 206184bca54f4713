"""Chat without persistence: when the context store (PostgreSQL) cannot be reached, a request that would read or
record a stored conversation is answered without it instead of failing, and says so — the header
`x-rhetor-persistence: unavailable` (and `persistence` in native replies), one warning a minute in the log, and
`details.persistence` in /health until the store answers again. A turn answered this way is not stored, and the
caller is told so; nothing is acknowledged as stored that was not.

Knows the error tree and a request's notes; nothing of SQL, HTTP or the stores' drivers.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from rhetor.errors import StoreUnavailableError

log = logging.getLogger("rhetor")
HEADER = "x-rhetor-persistence"
WARN_EVERY_S = 60.0


class Persistence:
    """Whether the context store answers, as the last request that touched it found."""

    def __init__(self) -> None:
        self.down_since: float | None = None
        self.error: str | None = None
        self.unstored = 0  # turns answered without being stored since start
        self._warned = 0.0

    def lost(self, inp: Any, exc: StoreUnavailableError) -> None:
        """The store failed for this request: it goes on without the stored conversation and without storing its
        turn, marked on its notes."""
        now = time.time()
        if self.down_since is None:
            self.down_since = now
        self.error = exc.message
        if inp.record:
            self.unstored += 1
        inp.record = False  # nothing more to write for this request
        notes = getattr(inp, "notes", None)
        if notes is not None and not (notes.fields or {}).get("persistence"):
            notes.note("persistence", "unavailable", HEADER, "unavailable: the conversation store did not answer; "
                                                             "this turn was answered without it and is not stored")
        if now - self._warned >= WARN_EVERY_S:
            self._warned = now
            log.warning("context store unavailable (%s): answering without stored conversations until it returns",
                        exc.message)

    def ok(self) -> None:
        if self.down_since is not None:
            log.warning("context store answers again after %.0f s", time.time() - self.down_since)
            self.down_since, self.error = None, None

    def status(self) -> dict[str, Any]:
        state = "ok" if self.down_since is None else "degraded"
        return {"state": state, "since": self.down_since, "error": self.error, "unstored_turns": self.unstored}


__all__ = ["HEADER", "Persistence"]
