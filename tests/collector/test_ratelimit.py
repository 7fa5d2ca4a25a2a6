"""Token bucket per write key: one second's burst, then the configured rate."""

from __future__ import annotations

import pytest

from engage_stream.collector.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_of_one_second_then_refused_with_the_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    assert [limiter.acquire("web", 4) for _ in range(4)] == [0.0] * 4
    assert limiter.acquire("web", 4) == pytest.approx(0.25)
    clock.now += 0.25
    assert limiter.acquire("web", 4) == 0.0
    assert limiter.acquire("web", 4) > 0


def test_keys_are_limited_separately_and_zero_is_unlimited() -> None:
    limiter = RateLimiter(Clock())
    assert limiter.acquire("a", 1) == 0.0
    assert limiter.acquire("a", 1) == pytest.approx(1.0)
    assert limiter.acquire("b", 1) == 0.0
    assert all(limiter.acquire("c", 0) == 0.0 for _ in range(10_000))


def test_slow_rates_still_allow_one_request() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    assert limiter.acquire("x", 0.5) == 0.0
    assert limiter.acquire("x", 0.5) == pytest.approx(2.0)
    clock.now += 2.0
    assert limiter.acquire("x", 0.5) == 0.0
