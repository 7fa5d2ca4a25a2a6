"""When an event counts: one `Window` per event condition / computed trait.

Why one shape for everything: `within`, `between`, the definition's lookback and the
"only events after the definition was applied" cut-off all reduce to

    an event at `ts` counts at time `t`  iff  since <= ts,  enter(ts) <= t < leave(ts)

with `enter(ts) = ts + a` and `leave(ts) = min(ts + b, end_of_hour(ts) + lookback)`.
Both are non-decreasing in `ts`, so for events kept sorted by time the ones that count
form one contiguous run: counting is two bisections, pruning drops a prefix, and the next
instant at which the answer can change is the enter time of the first event not yet in,
or the leave time of the oldest event still in. That is what makes time-driven exits
possible without scanning history, and what keeps state keyed by event time (so arrival
order does not matter).

- `within d`: `a = 0`, `b = d` — event time in (now - d, now].
- `between start and end`: `a = start`, `b = end + 1` — event time in [now - end, now - start].
- lookback (include_history: {days: N}): an event leaves at the end of its hour + N days;
  Segment's lookbacks are precise to the hour (reference §1.1), which also lets computed
  traits keep one aggregate per hour instead of one entry per event.
- include_history false: no lookback, and no cut on the event's own time: what counts is
  the events *received* after the definition was created, which the engine decides before
  an event reaches the window (`Engine._arrival_cut`).
- events with `ts > now` (clock skew, imports) count from `ts` on: they "enter" later.
- a computed trait's `within` of a day or more is *grained* (`Window.grained`): an event
  leaves at the end of its grain + `b` — never early, at most 0.1 % of the window and at
  most an hour late. A grain is the longest that divides an hour and is at most 1/1000
  of the window (7 days: 10 min, 30 days: 30 min, 90 days: 1 h), aligned to the epoch,
  so no grain straddles an hour and the hour-precise lookback never cuts one. Events that
  already count and leave together can then be kept as one entry (aggregates.py), so a
  busy profile's window holds one entry per grain and distinct value at most (1,000 to
  2,160 grains a window), not one per event. Segment documents sliding windows as batch-computed, so a late exit well under
  its own refresh interval is inside the product's behaviour. Entering stays exact.

Relative-date event filters (`delivery_at within_next 3 days`) hold only at some instants
of the evaluation clock, so such an event counts on a union of intervals (`Spans`: a
flat sorted list `[start, end, start, end, ...]` of half-open intervals): what the
filters allow (`operators.duration_spans`, intersected) within `[enter, leave)`. Those
events lose the contiguous-run property; their definitions rescan what they keep.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from math import isqrt

from engage_stream.definitions.models import Between, Duration, History

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
GRAIN_FROM = DAY_MS  # windows at least this long are grained
GRAIN_PARTS = 1_000  # a grain is at most this fraction of the window: exits ≤ 0.1 % late
_HOUR_DIVISORS = sorted(
    {d for i in range(1, isqrt(HOUR_MS) + 1) if HOUR_MS % i == 0 for d in (i, HOUR_MS // i)}
)
INF = 1 << 62  # "never": beyond any epoch-ms timestamp
NO_SINCE = -INF
Spans = list[int]  # [start, end, start, end, ...]: sorted disjoint half-open intervals
ALWAYS: Spans = [-INF, INF]


def union(intervals: Iterable[tuple[int, int]]) -> Spans:
    out: Spans = []
    for lo, hi in sorted(intervals):
        if lo >= hi:
            continue
        if out and lo <= out[-1]:
            if hi > out[-1]:
                out[-1] = hi
        else:
            out += (lo, hi)
    return out


def intersect(x: Spans, y: Spans) -> Spans:
    out: Spans = []
    i = j = 0
    while i < len(x) and j < len(y):
        lo, hi = max(x[i], y[j]), min(x[i + 1], y[j + 1])
        if lo < hi:
            out += (lo, hi)
        if x[i + 1] < y[j + 1]:
            i += 2
        else:
            j += 2
    return out


def live(spans: Spans, now: int) -> bool:
    """Does it hold at some instant from `now` on?"""
    return bool(spans) and spans[-1] > now


def inside(spans: Spans, t: int) -> bool:
    return bisect_right(spans, t) & 1 == 1


def next_bound(spans: Spans, t: int) -> int:
    """The first instant after `t` at which `inside` changes, or INF."""
    i = bisect_right(spans, t)
    return spans[i] if i < len(spans) and spans[i] < INF else INF


@dataclass(frozen=True, slots=True)
class Window:
    a: int = 0  # minimum age (ms) at which an event starts to count
    b: int = INF  # age (ms) at which it stops counting (exclusive)
    lookback: int = INF  # hour-precise outer window
    since: int = NO_SINCE  # events before this instant never count
    grain: int = 0  # > 0: an event leaves at the end of its grain + b (module doc)

    @classmethod
    def of(
        cls,
        within: Duration | None,
        between: Between | None,
        history: History | None,
        applied_at: int,
    ) -> Window:
        a, b = 0, INF
        if within is not None:
            b = within.ms
        elif between is not None:
            a, b = between.start.ms, between.end.ms + 1
        if history is None:
            return cls(a, b, INF, NO_SINCE)
        return cls(a, b, history.ms, NO_SINCE)

    @property
    def bucketable(self) -> bool:
        """No explicit window: events only leave with the (hour-precise) lookback, if any,
        so one aggregate per hour (or one in all) loses nothing."""
        return self.a == 0 and self.b >= INF

    def grained(self) -> Window:
        """This window with exits rounded up to its grain, where that is allowed: a plain
        `within` of at least GRAIN_FROM that the lookback does not cut (module doc)."""
        if self.grain or self.a != 0 or not GRAIN_FROM <= self.b < INF or self.lookback < self.b:
            return self
        # (grains end on the hour: so does the lookback)
        g = _HOUR_DIVISORS[bisect_right(_HOUR_DIVISORS, self.b // GRAIN_PARTS) - 1]
        return Window(self.a, self.b, self.lookback, self.since, g)

    def leave(self, ts: int) -> int:
        if self.grain:
            return (ts // self.grain + 1) * self.grain + self.b
        x = ts + self.b
        if self.lookback < INF:
            y = (ts // HOUR_MS + 1) * HOUR_MS + self.lookback
            if y < x:
                return y
        return x

    def bucket_leave(self, key: int) -> int:
        """Leave time of an hour bucket starting at `key` (bucketable windows only)."""
        return key + HOUR_MS + self.lookback if self.lookback < INF else INF

    def bucket(self, ts: int) -> int:
        return ts // HOUR_MS * HOUR_MS if self.lookback < INF else 0

    @property
    def linear(self) -> bool:
        """`leave(ts) == ts + b` for every ts: the lookback never cuts the window short
        (so "left by t" is `ts <= t - b`, a bisection on sorted times)."""
        return self.lookback >= self.b and not self.grain

    def usable_fn(self) -> Callable[[int, int], bool]:
        """`usable` as a plain function, specialised for this window (hot path)."""
        since, a, b = self.since, self.a, self.b
        if not self.linear:
            return self.usable
        if b <= a:
            return lambda ts, now: False
        if since == NO_SINCE:
            return lambda ts, now: ts + b > now
        return lambda ts, now: ts >= since and ts + b > now

    def spans(self, ts: int, allowed: Spans) -> Spans:
        """When an event at `ts` that its filters allow at `allowed` counts."""
        if ts < self.since:
            return []
        return intersect(allowed, [ts + self.a, self.leave(ts)])

    def usable(self, ts: int, now: int) -> bool:
        """Can an event at `ts` count at `now` or later? (Otherwise do not store it.)"""
        if ts < self.since:
            return False
        if self.grain:
            return self.leave(ts) > now
        leave = ts + self.b  # inlined self.leave(ts): this runs for every listener
        if self.lookback < INF:
            y = (ts // HOUR_MS + 1) * HOUR_MS + self.lookback
            if y < leave:
                leave = y
        return leave > now and leave > ts + self.a
