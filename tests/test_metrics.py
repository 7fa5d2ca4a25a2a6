"""`metrics.observe_many`: a batch of observations in one update, exposed as one `observe`
per amount would have been (the same buckets and count; the sum up to float rounding, as it
is added up in another order)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram

from engage_stream import metrics

BUCKETS = (0.05, 0.1, 0.5, 1.0, 5.0)


def _histogram() -> tuple[CollectorRegistry, Histogram]:
    registry = CollectorRegistry()
    return registry, Histogram("lag_seconds", "a lag", buckets=BUCKETS, registry=registry)


@pytest.mark.parametrize("seed", range(5))
def test_the_same_exposition_as_one_observe_each(seed: int) -> None:
    rng = random.Random(seed)
    # exactly on the bounds, between them, below the first, past the last (+Inf), zero
    amounts = [*BUCKETS, 0.0, 0.0001, 7.5, 1e9] + [rng.uniform(0, 8) for _ in range(200)]
    rng.shuffle(amounts)
    one_reg, one = _histogram()
    many_reg, many = _histogram()
    for a in amounts:
        one.observe(a)
    half = len(amounts) // 2
    metrics.observe_many(many, amounts[:half])
    metrics.observe_many(many, amounts[half:])
    metrics.observe_many(many, [])
    assert _samples(many_reg, "_bucket") == _samples(one_reg, "_bucket")
    assert _samples(many_reg, "_count") == _samples(one_reg, "_count") == [((), len(amounts))]
    [(_, total)] = _samples(many_reg, "_sum")
    assert total == pytest.approx(sum(amounts), rel=1e-12)
    assert len(_samples(many_reg, "_bucket")) == len(BUCKETS) + 1


def _samples(registry: CollectorRegistry, suffix: str) -> list[tuple[Any, float]]:
    return [
        (tuple(sorted(s.labels.items())), s.value)
        for m in registry.collect()
        for s in m.samples
        if s.name == "lag_seconds" + suffix
    ]
