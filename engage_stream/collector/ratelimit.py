"""Per-write-key rate limits: a token bucket of requests per second.

Segment asks for at most 1,000 requests/s per workspace and answers 429 with
Retry-After and X-RateLimit-Reset past its limits (reference §9); here each write key
may have its own rate, and a bucket holds one second's worth so short bursts pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    rate: float
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, name: str, rate: float) -> float:
        """0 when `name` may send a request now (and it is counted), else the seconds
        until it may. A rate of 0 means unlimited."""
        if rate <= 0:
            return 0.0
        now = self._clock()
        burst = max(1.0, rate)
        bucket = self._buckets.get(name)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[name] = _Bucket(rate, burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate
