"""The worker's process set-up in `cli`: what it adds to the process before Faust runs."""

from __future__ import annotations

import gc

from engage_stream import metrics
from engage_stream.cli import GcPauses


def _count(generation: str) -> float:
    return (
        metrics.REGISTRY.get_sample_value(
            "engage_gc_pause_seconds_count", {"generation": generation}
        )
        or 0.0
    )


def test_every_collection_is_observed_by_its_generation() -> None:
    pauses = GcPauses()
    before = [_count(str(g)) for g in range(3)]
    gc.callbacks.append(pauses.callback)
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        gc.callbacks.remove(pauses.callback)
    after = [_count(str(g)) for g in range(3)]
    assert after[0] - before[0] >= 1
    assert after[2] - before[2] >= 1


def test_a_stop_without_its_start_observes_nothing() -> None:
    """Installed between a collection's start and stop: the half-seen one is not a pause."""
    pauses = GcPauses()
    before = _count("1")
    pauses.callback("stop", {"generation": 1, "collected": 0, "uncollectable": 0})
    assert _count("1") == before


def test_the_series_exist_before_the_first_collection() -> None:
    GcPauses()
    for g in range(3):
        assert (
            metrics.REGISTRY.get_sample_value(
                "engage_gc_pause_seconds_count", {"generation": str(g)}
            )
            is not None
        )
