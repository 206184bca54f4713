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
        "openai/gpt-4o": {"state": "open", "consecutive_failures": 3, "opened_at": 12.5},
        "ollama/llama3": {"state": "closed", "consecutive_failures": 1, "opened_at": None},
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
