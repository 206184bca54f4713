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
`tune_malloc` (first thing in `python -m rhetor`, before any thread exists) sets glibc's allocator for a long-lived
server: one arena, and fixed mmap/trim thresholds of 128 KiB. glibc's defaults gave each thread that allocates
(the SQLite workers, the embedder, uvloop's resolver pool) an arena of its own that it never gives back, and raised
the mmap threshold to the largest block freed so far (up to 32 MiB), so the embedder's multi-MiB scratch arrays
and the model's matrices moved into a thread's arena instead of being unmapped when freed: resident memory swung
by ~10 MiB with each batch and crept (`benchmarks/lean.py soak`; README "Lean install"). The GIL serialises
nearly every allocation anyway, so one arena costs no contention worth measuring. An operator's own
MALLOC_ARENA_MAX / MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ win; RHETOR_MALLOC_TUNE=0 leaves glibc alone.
Knows nothing of the app.
"""

from __future__ import annotations

import gc
import os

YOUNG_THRESHOLD = 25_000  # net allocations of tracked objects between first-generation collections (CPython: 700)
# mallopt(3) parameters and the values `tune_malloc` sets, each skipped when the operator set its variable
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
MALLOC_SETTINGS = (
    (M_ARENA_MAX, "MALLOC_ARENA_MAX", 1),
    (M_MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_", 128 * 1024),  # also ends glibc's dynamic thresholds
    (M_TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_", 128 * 1024),
)


def tune_malloc() -> bool:
    """glibc's malloc set for a server (see the module docstring); call before any thread starts. False when
    not glibc, or RHETOR_MALLOC_TUNE=0."""
    if os.environ.get("RHETOR_MALLOC_TUNE", "1") == "0":
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
    except (ValueError, OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return False
    import ctypes  # ~5 ms of start-up, paid only here

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    for param, env, value in MALLOC_SETTINGS:
        if env not in os.environ:
            mallopt(ctypes.c_int(param), ctypes.c_int(value))
    return True


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


__all__ = ["MALLOC_SETTINGS", "YOUNG_THRESHOLD", "hold", "release", "settle", "tune_malloc"]
