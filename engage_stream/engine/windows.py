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

from engage_stream.definitions.models import Between, Duration, History

HOUR_MS = 3_600_000
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

    def leave(self, ts: int) -> int:
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
        return self.lookback >= self.b

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
        leave = ts + self.b  # inlined self.leave(ts): this runs for every listener
        if self.lookback < INF:
            y = (ts // HOUR_MS + 1) * HOUR_MS + self.lookback
            if y < leave:
                leave = y
        return leave > now and leave > ts + self.a
