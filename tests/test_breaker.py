"""Circuit breaker transitions, driven by a fake clock."""

from __future__ import annotations

import pytest

from rhetor.routing.breaker import CircuitBreaker

KEY = ("openai", "gpt-4o")
OTHER = ("ollama", "llama3")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(threshold=3, cooldown_s=30.0, clock=clock)


def fail(b: CircuitBreaker, n: int, key: tuple[str, str] = KEY) -> None:
    for _ in range(n):
        b.record_failure(key)


def test_closed_allows(breaker: CircuitBreaker) -> None:
    assert breaker.state(KEY) == "closed"
    assert breaker.allow(KEY)
    assert breaker.snapshot() == {}


def test_opens_at_threshold(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    assert breaker.state(KEY) == "closed" and breaker.allow(KEY)
    fail(breaker, 1)
    assert breaker.state(KEY) == "open"
    assert not breaker.allow(KEY)
    assert breaker.allow(OTHER)  # keyed per (provider, model)


def test_success_resets_consecutive_count(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    breaker.record_success(KEY)
    fail(breaker, 2)
    assert breaker.state(KEY) == "closed"


def test_half_open_lets_one_trial_through(breaker: CircuitBreaker, clock: Clock) -> None:
    fail(breaker, 3)
    clock.now += 29.9
    assert not breaker.allow(KEY)
    clock.now += 0.1
    assert breaker.state(KEY) == "half_open"
    assert breaker.allow(KEY)
    assert not breaker.allow(KEY)  # trial in flight
    breaker.record_success(KEY)
    assert breaker.state(KEY) == "closed"
    assert breaker.allow(KEY) and breaker.allow(KEY)


def test_half_open_failure_reopens_and_restarts_cooldown(breaker: CircuitBreaker, clock: Clock) -> None:
    fail(breaker, 3)
    clock.now += 30
    assert breaker.allow(KEY)
    breaker.record_failure(KEY)
    assert breaker.state(KEY) == "open"
    clock.now += 20
    assert not breaker.allow(KEY)
    clock.now += 10
    assert breaker.state(KEY) == "half_open"
    assert breaker.allow(KEY)


def test_failures_while_open_do_not_extend_cooldown(breaker: CircuitBreaker, clock: Clock) -> None:
    fail(breaker, 3)
    clock.now += 20
    fail(breaker, 2)  # calls that started before the circuit opened
    clock.now += 10
    assert breaker.state(KEY) == "half_open"


def test_lost_trial_does_not_wedge(breaker: CircuitBreaker, clock: Clock) -> None:
    fail(breaker, 3)
    clock.now += 30
    assert breaker.allow(KEY)  # the trial never reports back
    clock.now += 29
    assert not breaker.allow(KEY)
    clock.now += 1
    assert breaker.allow(KEY)


def test_snapshot(breaker: CircuitBreaker, clock: Clock) -> None:
    fail(breaker, 3)
    fail(breaker, 1, OTHER)
    clock.now += 12.5
    assert breaker.snapshot() == {
        "openai/gpt-4o": {"state": "open", "consecutive_failures": 3, "opened_at": 12.5, "opened_by": "consecutive",
                          "in_flight": 0, "window_calls": 0, "window_failures": 0},  # 12.5 s: out of the window
        "ollama/llama3": {"state": "closed", "consecutive_failures": 1, "opened_at": None, "opened_by": None,
                          "in_flight": 0, "window_calls": 0, "window_failures": 0},
    }


def test_threshold_one_and_zero_cooldown(clock: Clock) -> None:
    b = CircuitBreaker(threshold=1, cooldown_s=0.0, clock=clock)
    b.record_failure(KEY)
    assert b.state(KEY) == "half_open"
    assert b.allow(KEY)
    assert not b.allow(KEY)


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(threshold=0, cooldown_s=1)
    with pytest.raises(ValueError):
        CircuitBreaker(threshold=1, cooldown_s=-1)
    for bad in ({"window_s": 0}, {"failure_rate": 0}, {"failure_rate": 1.5}, {"min_calls": 0}):
        with pytest.raises(ValueError):
            CircuitBreaker(threshold=1, cooldown_s=1, **bad)  # type: ignore[arg-type]


def rated(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(threshold=5, cooldown_s=30.0, clock=clock, window_s=10.0, failure_rate=0.3, min_calls=10)


def test_opens_on_failure_rate_without_consecutive_failures(clock: Clock) -> None:
    # 30% of calls fail, never two in a row: the consecutive count never passes 1, yet the rate trips it
    # (before: a threshold-only breaker stayed closed at any failure rate below 100%)
    b = rated(clock)
    for i in range(9):
        (b.record_failure if i % 3 == 0 else b.record_success)(KEY)
        clock.now += 0.1
    assert b.state(KEY) == "closed"  # 3 of 9, but under min_calls
    b.record_success(KEY)
    b.record_failure(KEY)  # 4 of 11 = 36% >= 30%
    assert b.state(KEY) == "open" and not b.allow(KEY)
    assert b.snapshot()["openai/gpt-4o"]["opened_by"] == "rate"


def test_rate_forgets_outcomes_older_than_the_window(clock: Clock) -> None:
    b = rated(clock)
    for _ in range(4):
        b.record_failure(KEY)
        b.record_success(KEY)
    clock.now += 11  # those eight calls leave the window
    for _ in range(8):
        b.record_success(KEY)
    b.record_failure(KEY)
    b.record_success(KEY)
    b.record_failure(KEY)  # 2 of 11 in the window: under 30%
    assert b.state(KEY) == "closed"


def test_success_after_reopen_starts_a_fresh_window(clock: Clock) -> None:
    b = rated(clock)
    for _ in range(10):
        b.record_success(KEY)
        b.record_failure(KEY)
    assert b.state(KEY) == "open"
    b.record_success(KEY)  # a call that started before it opened does not close it
    assert b.state(KEY) == "open"
    clock.now += 30
    assert b.allow(KEY)
    b.record_success(KEY)  # the trial succeeds
    b.record_failure(KEY)  # one failure right after must not re-open it on the old window's rate
    assert b.state(KEY) == "closed"


def test_calls_in_flight_count_once_a_target_fails(breaker: CircuitBreaker) -> None:
    for _ in range(10):
        breaker.acquire(KEY)
    assert breaker.allow(KEY)  # healthy so far: in-flight calls alone never limit
    breaker.release(KEY)
    breaker.record_failure(KEY)  # 1 failure + 9 in flight >= threshold 3: the 9 are probable failures
    assert not breaker.allow(KEY)
    assert breaker.state(KEY) == "closed"
    for _ in range(8):
        breaker.release(KEY)  # those calls ended without a verdict (e.g. non-retryable)
    assert breaker.allow(KEY)  # 1 failure + 1 in flight < 3
    breaker.release(KEY)
    breaker.record_success(KEY)
    for _ in range(10):
        breaker.acquire(KEY)
    assert breaker.allow(KEY)
    snap = breaker.snapshot()["openai/gpt-4o"]
    assert snap["consecutive_failures"] == 0 and snap["in_flight"] == 10 and snap["window_failures"] == 1
