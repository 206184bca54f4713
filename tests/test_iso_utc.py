"""`rhetor.session.iso_utc` answers what `datetime.fromtimestamp(ts, UTC).isoformat()` answers (the native reply's
`timestamp`): microseconds rounded half to even, none shown at 0, the date changing at midnight."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from rhetor.session import iso_utc


def _same(ts: float) -> None:
    assert iso_utc(ts) == datetime.fromtimestamp(ts, UTC).isoformat(), ts


def test_edges() -> None:
    for ts in (0.0, 1.5e-6, 2.5e-6, 5e-7, 1e9 + 5e-7, 1_764_547_199.9999995, 1_764_547_200.0, 1_764_547_200.0000004,
               1_764_547_199.999999, 253402300798.9999999, 86399.9999996):
        _same(ts)


def test_microseconds_across_seconds() -> None:
    base = 1_764_547_190.0
    for k in range(0, 20_000_000, 997):  # 20 s in steps of ~1 ms, odd so every digit moves
        _same(base + k / 1e6)


def test_random_times() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        _same(rng.uniform(0, 4e9))


def test_outside_the_fast_range_is_datetimes_own() -> None:
    _same(-1.25)
    for bad in (float("nan"), float("inf")):
        try:
            expected = datetime.fromtimestamp(bad, UTC).isoformat()
        except (ValueError, OverflowError) as exc:
            try:
                iso_utc(bad)
            except type(exc):
                continue
            raise AssertionError(f"{bad}: no {type(exc).__name__}") from None
        assert iso_utc(bad) == expected
