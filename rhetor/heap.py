"""The garbage collector's settings for a serving process (`python -m rhetor`), applied once the server has started.

Under load, requests in flight keep thousands of young container objects alive together, so CPython's default
first-generation threshold (700 net allocations) ran a collection every few requests, each traversing that live
set and promoting it: 30k-70k instructions a request of the OpenAI front served at concurrency 32 (callgrind of
benchmarks/instructions.py oa --where server: the collector's own functions, and with what they call); ~0 with
this threshold. Freezing what start-up built (modules, config, schemas, the lifespan's clients: ~80k objects)
keeps it out of every later collection; frozen before the lifespan ran, the collector still cost ~30k.
Applied by the CLI's server only (RhetorServer's `settle_heap`): a process embedding the app (tests, another
server) keeps its own collector settings. Reference cycles are still collected, a little later.
Before that, `python -m rhetor` holds the collector off while it imports and builds the app (`hold`, released by
`settle`, or by `release` on any other path): start-up creates ~100k long-lived objects and the young-generation
collections over them cost ~90M instructions (~4% of start-up; callgrind of the imports with and without).
Knows nothing of the app.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 25_000  # net allocations of tracked objects between first-generation collections (CPython: 700)


def hold() -> None:
    """No collection during start-up (everything it allocates lives on); `settle` or `release` ends it."""
    gc.disable()


def release() -> None:
    """The collector back on, unchanged otherwise: a command that does not serve, a server that did not start."""
    gc.enable()


def settle() -> None:
    """Call once, after start-up, in the serving process."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
    gc.enable()


__all__ = ["YOUNG_THRESHOLD", "hold", "release", "settle"]
