"""The chaos runs' input: the bench workload, squeezed into a few hours that end just
before the run, so that what the workers output does not depend on when they run.

The workers' clock is the wall clock (ticks), and a window's exit falls due at an event's
time plus the window (a computed trait's of a day or more: up to an hour later, at the end
of its grain). The bench definitions' windows are 1 hour (a funnel's span) to 90
days. With every event between `end − 6 h` and `end`, and `end` at least an hour before the
first worker starts, each boundary `t + W` has passed before the run begins (W = 1 h) or
falls more than 16 hours after it (W ≥ 1 day): no exit falls due while a run is going on,
so an uninterrupted run, a chaos run an hour later and a replay of either reach the same
memberships with the same change records.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass

from bench.workload import Record, Workload, WorkloadSpec, produce, produce_async
from engage_stream.config import Settings

SPAN_DAYS = 0.25  # six hours of event time
HOUR_MS = 3_600_000


def quiet_end_ms(now_ms: int | None = None) -> int:
    """The newest event time for a run starting now: an hour before the last full hour."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return now // HOUR_MS * HOUR_MS - HOUR_MS


@dataclass(frozen=True)
class ChaosWorkload:
    events: int
    profiles: int
    seed: int
    end_ms: int

    @property
    def spec(self) -> WorkloadSpec:
        return WorkloadSpec(
            profiles=self.profiles,
            events=self.events,
            days=SPAN_DAYS,
            end_ms=self.end_ms,
            seed=self.seed,
        )

    def lines(self) -> Iterator[bytes]:
        return Workload(self.spec).lines()

    def produce(self, settings: Settings) -> int:
        """Into the run's mixed input topic: one person's events stay in their order across
        types, so both runs apply each profile's events in the same order."""
        sent, _ = produce(settings, self.spec, mixed=True)
        return sent

    def feeder(self, settings: Settings, parts: int) -> Feeder:
        return Feeder(settings, Workload(self.spec).records(), self.events, parts)


class Feeder:
    """The same records in `parts` consecutive slices, produced one slice at a time: the
    chaos run gets its input while the faults happen, so every fault meets work in flight,
    and each partition still receives the records in the order the uninterrupted run did."""

    def __init__(
        self, settings: Settings, records: Iterator[Record], events: int, parts: int
    ) -> None:
        self.settings = settings
        self.records = records
        self.size = -(-events // max(1, parts))
        self.sent = 0

    def next(self) -> int:
        """Produce the next slice (nothing once all are sent); how many records it had."""
        n, _ = asyncio.run(
            produce_async(self.settings, itertools.islice(self.records, self.size), mixed=True)
        )
        self.sent += n
        return n
