"""rhetor.heap.tune_malloc: glibc's fixed mmap threshold is in force after it (a freed large block no longer
raises it), an operator's RHETOR_MALLOC_TUNE=0 leaves glibc alone. Each case runs in a fresh interpreter: mallopt
settings are process-wide and cannot be undone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# After a 1 MiB block (mmapped) is freed, glibc's default raises its mmap threshold to 1 MiB, so a 200 kB block
# comes from the heap; with the threshold fixed at 128 KiB it is mmapped (a chunk at offset 16 of its page).
PROBE = """
import ctypes, sys
from rhetor import heap
print(heap.tune_malloc())
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(1 << 20))
block = libc.malloc(200_000)
print(block % 4096 == 16)
"""


def _probe(**env: str) -> list[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    for var in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        full.pop(var, None)
    out = subprocess.run([sys.executable, "-c", PROBE], env=full, capture_output=True, text=True, check=True)
    return out.stdout.split()


def _glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError, AttributeError):
        return False


glibc = pytest.mark.skipif(not _glibc(), reason="glibc's malloc")


@glibc
def test_tuned_malloc_keeps_large_blocks_mapped() -> None:
    assert _probe() == ["True", "True"]


@glibc
def test_off_leaves_glibc_defaults() -> None:
    assert _probe(RHETOR_MALLOC_TUNE="0") == ["False", "False"]
