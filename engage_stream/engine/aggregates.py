"""Computed traits (reference §2): per-type aggregates over a window, updated in O(1)
per event (amortised), with state bounded by the window.

Storage, by window (see windows.py for when an event counts):
- *exact* (explicit `within` / `between`): one entry per qualifying event in the window,
  sorted by time, stored column-wise as `[times, contributions, total, k]` (a counter's
  contributions are all 1 and not stored: `None`) — two flat lists decode and encode at
  about half the cost of one small list per event. The entries that already count are a
  prefix (`k` of them); invertible aggregates (counter, sum, avg, most_frequent,
  unique_*) keep a running total of that prefix, adding an entry when it starts to count
  and subtracting it when it leaves, so an evaluation never re-reads the window;
- *grained* (an explicit `within` of a day or more, windows.py): the exact layout plus
  `counts`, `[times, values, total, k, counts]` — entries that count and leave together
  (one grain, and the same contribution; any, for a counter or a first) are one entry of
  `counts[i]` events, so a window holds at most one entry per grain and distinct value;
- *bucketed* (no explicit window: the hour-precise lookback, or nothing): one
  `[hour, partial]` per hour with events (a single bucket when nothing ever leaves),
  plus `pending` events whose time is not reached yet, plus the running total — a 90-day
  counter keeps at most 2,160 entries however many events there are;
- *dynamic* (a `where` filter compares with a trait, or a relative date): `[entries]`,
  an entry `[ts, contribution, values]` per event, plus the instants it qualifies at
  (`spans`, windows.py) with a relative-date filter; the filters are re-decided at every
  evaluation (the trait or the clock may have moved on);
- *session* (`session: {expires_after: gap}`, reference §2): the events of the latest
  sessions — runs of the trait's events less than `gap` apart, kept as
  `[start, last, contributions, total]` — the value being the latest session's while it
  is current (`now < last + gap`). Its expiry is a wake-up, so the reset happens with no
  new event. An expired session is kept `retention` longer (the engine's allowed
  lateness, or `gap` when every late event is applied) so that a late event that extends,
  revives or bridges sessions counts as in time order; after that it is forgotten and a
  later event that belonged to it makes a session of its own.

Non-invertible types read the window's ends: first = oldest counting entry, last = newest
(older entries are dropped: they can never be the answer again); min / max keep a
"staircase" — an entry with a newer entry at least as good can never be the answer again,
since the newer one leaves later — so the answer is the oldest kept entry.

Exact and order-independent: sums are Shewchuk partials (the algorithm behind
`math.fsum`, exact under addition and subtraction), a sum is an int while no float is in
it, and ties break on values, never on arrival. Any arrival order of the same events
yields the same value.

Values: counter, sum, avg, min, max, most_frequent, first, last, unique_list,
unique_count. An event without the property (or, for sum/avg/min/max, whose property is
not a number — strings in plain decimal notation count as one: operators.as_number) does
not count, and neither does a float beyond ±MAX_FLOAT_TERM in a sum or average; min / max
`as_string` compare the text of scalars instead (lexicographic, by code point: "10" <
"9"), objects and arrays not counting. Unique lists and most-frequent ties follow
`order_key`. No
qualifying event in the window → None (the trait is cleared), except that a counter, sum
or unique_count is 0 once the profile has had a value (`orders_30d = 0` must hold after
the last order leaves). Those three append `first` to their state, the earliest instant
any qualifying event counted, and keep it alone (an int) when the window empties; it is
a function of the events alone (an event that arrives after its window still sets it),
so arrival order and backfills agree.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import orjson

from engage_stream.definitions.models import ComputedTraitDefinition
from engage_stream.engine.filters import (
    DynamicFilters,
    TimedMatch,
    always,
    compile_dynamic_filters,
    compile_static_filters,
    compile_timed_filters,
    equality_filter,
)
from engage_stream.engine.operators import as_number, get_path, split_path
from engage_stream.engine.state_text import decode as decode_state
from engage_stream.engine.windows import INF, Window, inside, next_bound
from engage_stream.profiles.record import ProfileRecord

Partial = Any


def _ts(entry: list[Any]) -> int:
    return entry[0]  # type: ignore[no-any-return]


def value_key(v: Any) -> str:
    """How most_frequent / unique compare values: as strings (non-strings as JSON)."""
    return v if type(v) is str else orjson.dumps(v).decode()


@lru_cache(maxsize=65_536)  # sorts run per evaluation over the same few values
def order_key(k: str) -> tuple[int, Any, str]:
    """The ordering rule of unique lists and most-frequent ties (reference §2:
    "alphabetical"): value keys that spell a number first, by value (`9` before `10`);
    then text by its case-folded form (`Hats` before `shoes`); keys equal under both by
    code point, so the order is total and never depends on arrival."""
    n = as_number(k)
    if n is not None:
        return (0, n, k)
    return (1, k.casefold(), k)


def _in_order(counts: dict[str, int]) -> list[str]:
    return sorted(counts, key=order_key)


def _msum(partials: list[float], x: float) -> None:
    """Add x to a list of non-overlapping float partials, exactly (Shewchuk / msum)."""
    i = 0
    for y in partials:
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        lo = y - (hi - x)
        if lo:
            partials[i] = lo
            i += 1
        x = hi
    partials[i:] = [x]


# -- invertible aggregates: partial = running total of some events ----------------------
class Invertible:
    """lift(contribution) → partial; merge / unmerge partials (mutating the first).
    `empty`: the value of an empty window once the profile has had one."""

    empty: Any = None

    def lift(self, c: Any) -> Partial:
        raise NotImplementedError

    def zero(self) -> Partial:
        raise NotImplementedError

    def merge(self, p: Partial, q: Partial, sign: int = 1) -> Partial:
        raise NotImplementedError

    def value(self, p: Partial) -> Any:
        raise NotImplementedError


class _Counter(Invertible):
    empty = 0

    def lift(self, c: Any) -> Partial:
        return 1

    def zero(self) -> Partial:
        return 0

    def merge(self, p: Partial, q: Partial, sign: int = 1) -> Partial:
        return p + sign * q

    def value(self, p: Partial) -> Any:
        return p


# A float term beyond this does not count in a sum or average: any number of smaller ones
# stays far inside the float range, so the partials never overflow to inf (whose sum with
# -inf is no answer at all).
MAX_FLOAT_TERM = 1e300
# orjson (profile state, output records) holds integers in this range
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def _int_part(v: int | str) -> int:
    return int(v) if type(v) is str else v  # type: ignore[arg-type]


class _Sum(Invertible):
    """[int part, float partials, count, float count]. The int part is exact however
    large; beyond the 64-bit range it is stored as its decimal text, and the sum is
    reported as a float."""

    def __init__(self, average: bool) -> None:
        self.average = average
        self.empty = None if average else 0

    def lift(self, c: Any) -> Partial:
        return [c, [], 1, 0] if type(c) is int else [0, [c], 1, 1]

    def zero(self) -> Partial:
        return [0, [], 0, 0]

    def merge(self, p: Partial, q: Partial, sign: int = 1) -> Partial:
        a, b = p[0], q[0]
        if type(a) is int and type(b) is int:
            a += sign * b
        else:
            a = _int_part(a) + sign * _int_part(b)
        p[0] = a if _INT_MIN <= a <= _INT_MAX else str(a)
        floats = p[1]
        for x in q[1]:
            _msum(floats, sign * x)
        p[2] += sign * q[2]
        p[3] += sign * q[3]
        if not p[3]:
            p[1] = []
        return p

    def value(self, p: Partial) -> Any:
        if not p[2]:
            return self.empty
        n = p[0]
        if type(n) is str:
            total: Any = math.fsum([*p[1], float(_int_part(n))])
        else:
            total = math.fsum([*p[1], n]) if p[3] else n
        return total / p[2] if self.average else total


class _Counts(Invertible):
    """{value key: occurrences}."""

    def __init__(self, final: Callable[[dict[str, int]], Any], empty: Any = None) -> None:
        self.final = final
        self.empty = empty

    def lift(self, c: Any) -> Partial:
        return {c: 1}

    def zero(self) -> Partial:
        return {}

    def merge(self, p: Partial, q: Partial, sign: int = 1) -> Partial:
        for k, n in q.items():
            m = p.get(k, 0) + sign * n
            if m:
                p[k] = m
            else:
                del p[k]
        return p

    def value(self, p: Partial) -> Any:
        return self.final(p) if p else self.empty


def _most_frequent(min_frequency: int) -> Callable[[dict[str, int]], Any]:
    def pick(counts: dict[str, int]) -> str | None:
        # the highest count (if frequent enough), ties to the first in the ordering rule
        n = max(counts.values())
        if n < min_frequency:
            return None
        best = [k for k, m in counts.items() if m == n]
        return best[0] if len(best) == 1 else min(best, key=order_key)

    return pick


# -- ends: first / last / min / max ------------------------------------------------------
def _better(kind: str) -> Callable[[Any, Any], bool]:
    """better(newer, older): the newer entry makes the older one useless."""
    if kind == "max":
        return lambda new, old: bool(new >= old)
    if kind == "min":
        return lambda new, old: bool(new <= old)
    return lambda new, old: True  # last: any newer entry wins


class CompiledTrait:
    """One computed trait: compiled filters, window and aggregate; see module doc."""

    kind = "computed_trait"

    def __init__(
        self, d: ComputedTraitDefinition, applied_at: int, allowed_lateness_ms: int = 0
    ) -> None:
        self.key = d.key
        self.definition = d
        self.include_anonymous = d.include_anonymous
        self.event = d.event
        self.events = frozenset({d.event})
        self.type = d.type
        self.path = split_path(d.property) if d.property else None
        self.static = compile_static_filters(d.where)
        self.dyn: DynamicFilters | None = compile_dynamic_filters(d.where)
        self.timed: TimedMatch | None = compile_timed_filters(d.where)
        self.deps: set[str] = self.dyn.trait_keys() if self.dyn is not None else set()
        self.w = Window.of(d.within, d.between, d.include_history, applied_at)
        self.gap = d.session.ms if d.session is not None else 0
        # how long an expired session is kept for late events (see _forget_sessions)
        self.retention = allowed_lateness_ms or self.gap
        self.mode = (
            "session"
            if self.gap
            else "dynamic"
            if self.dyn is not None or self.timed is not None
            else "bucketed"
            if self.w.bucketable
            else "exact"
        )
        if self.mode == "exact" and self.timed is None:
            self.w = self.w.grained()
        self.grain = self.w.grain
        self.inv: Invertible | None = None
        t = d.type
        if t == "counter":
            self.inv = _Counter()
        elif t in ("sum", "avg"):
            self.inv = _Sum(average=t == "avg")
        elif t == "most_frequent":
            self.inv = _Counts(_most_frequent(d.min_frequency))
        elif t == "unique_list":
            self.inv = _Counts(_in_order)
        elif t == "unique_count":
            self.inv = _Counts(len, 0)
        self.textual = d.as_string  # min / max of text, by code point
        self.summed = t in ("sum", "avg")
        self.numeric = self.summed or (t in ("min", "max") and not self.textual)
        self.keyed = t in ("most_frequent", "unique_list", "unique_count")
        self.ends = t in ("first", "last")
        self.better = _better(t) if t in ("min", "max", "last") else None
        self.empty = self.inv.empty if self.inv is not None else None
        self.marks = self.empty is not None  # keeps `first` when the window empties
        # first/last: ties at one instant break on the value, never on arrival
        self.order: Callable[[list[Any]], Any] = (
            (lambda e: (e[0], value_key(e[1]))) if self.ends else _ts
        )
        # hot-path specialisations (same results as the general code they replace)
        self.usable = self.w.usable_fn()
        self.filtered = self.static is not always
        self.since = self.w.since
        self.plain_window = (
            (self.w.linear or self.grain > 0) and self.w.b > self.w.a and self.timed is None
        )
        self.linear = self.w.linear  # leave(ts) == ts + b
        self.a, self.b = self.w.a, self.w.b
        self.agg = "counter" if t == "counter" else "counts" if self.keyed else "other"
        # state length: `first` last, kept only by the types it matters to
        self.width = {"exact": 4, "bucketed": 3, "dynamic": 1, "session": 2}[self.mode]
        self.width += (self.grain > 0) + self.marks
        self.evaluate = (  # type: ignore[method-assign]
            self._evaluate_exact_or_none if self.mode == "exact" else self._evaluate_any
        )
        if self.mode == "session":
            self.ingest = self._ingest_session  # type: ignore[method-assign]
            self.evaluate = self._evaluate_session  # type: ignore[method-assign]

    def equality_filter(self, name: str) -> tuple[str, str] | None:
        """(property, string) every stored event must equal, if any (index.EventListeners)."""
        return equality_filter(self.definition.where) if name == self.event else None

    # -- ingest -------------------------------------------------------------------------
    def contribution(self, props: dict[str, Any]) -> Any:
        """What one event adds (None: it does not count)."""
        if self.path is None:
            return 1
        p = self.path
        v = props.get(p[0]) if len(p) == 1 else get_path(props, p)
        if v is None:
            return None
        if self.numeric:
            n = as_number(v)
            if self.summed and type(n) is float and not -MAX_FLOAT_TERM <= n <= MAX_FLOAT_TERM:
                return None
            return n
        if self.keyed:
            return value_key(v)
        if self.textual:  # scalars by their text (as most_frequent compares them)
            return None if type(v) is dict or type(v) is list else value_key(v)
        return v

    def ingest(
        self, state: Any, name: str, props: dict[str, Any], ts: int, message_id: str, now: int
    ) -> tuple[Any, bool]:
        """(state, whether the event counts for this trait at all). `state` may still be
        the stored JSON string: it is only decoded when the event counts."""
        if self.filtered and not self.static(props):
            return state, False
        spans = None
        if self.plain_window:  # Window.usable for ts + b (or grained) windows, inlined
            leave = ts + self.b if not self.grain else self.w.leave(ts)
            if leave <= now or ts < self.since:
                return self._mark(state, props, ts + self.a) if ts >= self.since else (state, False)
        elif self.timed is not None:
            spans = self.w.spans(ts, self.timed(props))
            if not spans:
                return state, False
            if spans[-1] <= now:
                return self._mark(state, props, spans[0])
        elif not self.usable(ts, now):
            w = self.w
            if ts < self.since or w.leave(ts) <= ts + self.a:
                return state, False  # never counts
            return self._mark(state, props, ts + self.a)
        c = self.contribution(props)
        if c is None:
            return state, False
        if type(state) is str:
            state = decode_state(state)
        if type(state) is not list or len(state) != self.width:
            state = self._current(state)
        first = ts + self.a if spans is None else spans[0]
        if self.marks and (state[-1] is None or first < state[-1]):
            state[-1] = first
        if self.mode == "dynamic":
            entry = [ts, c, self.dyn.values(props) if self.dyn is not None else []]
            if spans is not None:
                entry.append(spans)
            insort(state[0], entry, key=_ts)
        elif self.mode == "exact":
            times, values = state[0], state[1]
            n = len(times)
            if not n or times[-1] < ts:
                i = n  # the newest: what the search below finds, cheaper
            else:
                i = bisect_right(times, ts)
                if self.ends:  # one instant: ordered by the value too (never by arrival)
                    vk = value_key(c)
                    j = bisect_left(times, ts)
                    while j < i and value_key(values[j]) <= vk:
                        j += 1
                    i = j
            times.insert(i, ts)
            if values is not None:
                values.insert(i, c)
            if self.grain:
                state[4].insert(i, 1)
            if i < state[3]:  # a newer entry already counts, so this one does too
                state[3] += 1
                if self.inv is not None:
                    state[2] = self.inv.merge(state[2], self.inv.lift(c))
                if self.grain:
                    self._fold_new(state, i)
        elif ts <= now:
            self._bucket_add(state, ts, c)
        else:
            insort(state[1], [ts, c], key=self.order)
        return state, True

    def _mark(self, state: Any, props: dict[str, Any], first: int) -> tuple[Any, bool]:
        """An event that counted only before now still gives the profile a value (its
        `first`), for the types that keep it (module doc)."""
        if not self.marks or self.contribution(props) is None:
            return state, False
        if type(state) is str:
            state = decode_state(state)
        if state is None or type(state) is int:  # only `first` to keep
            return (first, True) if state is None or first < state else (state, False)
        if len(state) != self.width:
            state = self._current(state)
        if state[-1] is not None and state[-1] <= first:
            return state, False
        state[-1] = first
        return state, True

    def _zero(self) -> Partial:
        return self.inv.zero() if self.inv is not None else None

    def _current(self, state: Any) -> list[Any]:
        """Stored state in its full layout: none yet, or just `first` (an int: an empty
        window), expanded."""
        marks = [state] if self.marks else []
        if state is None or type(state) is int:
            if self.mode == "session":
                return [[], [], *marks]
            if self.mode == "exact":
                counts: list[list[int]] = [[]] if self.grain else []
                values = None if self.agg == "counter" else []
                return [[], values, self._zero(), 0, *counts, *marks]
            if self.mode == "bucketed":
                return [[], [], self._zero(), *marks]
            return [[], *marks]
        if self.mode == "exact" and len(state) == self.width - 1 and self.grain:
            state.insert(4, [1] * len(state[0]))  # an exact window's entries, one event each
        elif self.mode == "exact" and len(state) == self.width + 1 and not self.grain:
            counts = state.pop(4)  # a grained window's entries, one per event again
            state[0] = [x for x, m in zip(state[0], counts, strict=True) for _ in range(m)]
            if state[1] is not None:
                state[1] = [x for x, m in zip(state[1], counts, strict=True) for _ in range(m)]
            state[3] = sum(counts[: state[3]])
        return state

    # -- grained windows: counting entries that leave together kept as one ---------------
    def _same(self, values: list[Any] | None, i: int, j: int) -> bool:
        """Can entries i and j of one grain be one entry? A counter's always; a first's
        too (only the earlier can be the answer: both leave at once); a last's never (the
        staircase keeps only the newest anyway, and its values are any JSON, whose
        equality Python and the core judge differently: `[1] == [1.0]`); otherwise when
        the contributions are equal, type included (1 and 1.0 sum differently)."""
        if values is None or self.type == "first":
            return True
        if self.type == "last":
            return False
        x, y = values[i], values[j]
        return type(x) is type(y) and x == y

    def _fold(self, state: list[Any], into: int, out: int) -> None:
        """Entry `out` (counting) becomes part of entry `into`, of the same grain."""
        counts = state[4]
        counts[into] += counts[out]
        del state[0][out], counts[out]
        if state[1] is not None:
            del state[1][out]
        state[3] -= 1

    def _fold_back(self, state: list[Any], x: int) -> bool:
        """Fold counting entry x into an earlier counting entry of its grain it is the
        same as (the nearest); whether it did."""
        times, g = state[0], self.grain
        key = times[x] // g
        j = x - 1
        while j >= 0 and times[j] // g == key:
            if self._same(state[1], j, x):
                self._fold(state, j, x)
                return True
            j -= 1
        return False

    def _fold_new(self, state: list[Any], i: int) -> None:
        """A late event's entry i, counting at once: into an earlier same entry of its
        grain, else the next such one into it (the earlier of two stays)."""
        if self._fold_back(state, i):
            return
        times, g = state[0], self.grain
        key = times[i] // g
        j = i + 1
        while j < state[3] and times[j] // g == key:
            if self._same(state[1], i, j):
                self._fold(state, i, j)
                return
            j += 1

    def _partial(self, ts: int, c: Any) -> Partial:
        if self.inv is not None:
            return self.inv.lift(c)
        if self.ends:
            return [ts, value_key(c), c]
        return c  # min / max

    def _bucket_add(self, state: list[Any], ts: int, c: Any) -> None:
        main = state[0]
        key = self.w.bucket(ts)
        q = self._partial(ts, c)
        if self.inv is not None:
            state[2] = self.inv.merge(state[2], q)
        i = bisect_left(main, key, key=_ts)
        if i == len(main) or main[i][0] != key:
            main.insert(i, [key, q])
            return
        p = main[i][1]
        if self.inv is not None:
            main[i][1] = self.inv.merge(p, q)
        elif self.type == "first":
            main[i][1] = min(p, q, key=lambda x: (x[0], x[1]))
        elif self.type == "last":
            main[i][1] = max(p, q, key=lambda x: (x[0], x[1]))
        elif self.type == "max":
            main[i][1] = max(p, q) if p != q else (p if type(p) is int else q)
        else:
            main[i][1] = min(p, q) if p != q else (p if type(p) is int else q)

    # -- evaluate -------------------------------------------------------------------------
    def evaluate(self, state: Any, profile: ProfileRecord, t: int) -> tuple[Any, int, Any]:
        """(value or None, next instant the value can change or INF, pruned state)."""
        return self._evaluate_any(state, profile, t)  # (replaced per instance in __init__)

    def _evaluate_exact_or_none(
        self, state: Any, profile: ProfileRecord, t: int
    ) -> tuple[Any, int, Any]:
        if state is None:
            return None, INF, None
        if type(state) is int:
            return self._nothing_counts(state, t)
        if len(state) != self.width:
            state = self._current(state)
        return self._evaluate_exact(state, t)

    def _evaluate_any(self, state: Any, profile: ProfileRecord, t: int) -> tuple[Any, int, Any]:
        if state is None:
            return None, INF, None
        if type(state) is int:
            return self._nothing_counts(state, t)
        if len(state) != self.width:
            state = self._current(state)
        if self.mode == "bucketed":
            return self._evaluate_bucketed(state, t)
        if self.mode == "exact":
            return self._evaluate_exact(state, t)
        return self._evaluate_dynamic(state, profile, t)

    def _nothing_counts(self, first: int | None, t: int) -> tuple[Any, int, Any]:
        """(value, due, state) when nothing is kept: 0 for the types that keep `first`
        from then on (None before it), and `first` as the whole state."""
        if not self.marks or first is None:
            return None, INF, None
        return self._idle(first, t), (INF if first <= t else first), first

    def _first(self, state: list[Any]) -> int | None:
        return state[-1] if self.marks else None  # type: ignore[no-any-return]

    def _idle(self, first: int | None, t: int) -> Any:
        """The value when no kept event counts: 0 once something has (module doc)."""
        return self.empty if first is not None and first <= t else None

    @staticmethod
    def _staircase(
        entries: list[Any], k: int, value_at: int, better: Callable[[Any, Any], bool]
    ) -> int:
        """Drop counting entries (the first k) that a newer counting entry beats; returns
        the new k. The survivors' values strictly improve towards the oldest."""
        keep: list[Any] = []
        best: Any = None
        for i in range(k - 1, -1, -1):
            e = entries[i]
            if best is None or not better(best, e[value_at]):
                keep.append(e)
                best = e[value_at]
        if len(keep) != k:
            keep.reverse()
            entries[:k] = keep
        return len(keep)

    def _evaluate_exact(self, state: list[Any], t: int) -> tuple[Any, int, Any]:
        if self.grain:
            return self._evaluate_grained(state, t)
        times, values, total, k = state[0], state[1], state[2], state[3]
        w, inv = self.w, self.inv
        limit = t - w.a
        n = len(times)
        agg = self.agg
        if k < n and times[k] <= limit:  # start counting
            k0 = k
            while k < n and times[k] <= limit:
                k += 1
            if agg == "counter":  # _Counter: lift = 1, merge = +
                total += k - k0
            elif agg == "counts":  # _Counts: lift(c) = {c: 1}
                for x in range(k0, k):
                    c = values[x]
                    m = total.get(c, 0) + 1
                    if m:
                        total[c] = m
                    else:
                        del total[c]
            elif inv is not None:
                for x in range(k0, k):
                    total = inv.merge(total, inv.lift(values[x]))
        i = 0
        if self.linear:  # stop counting: ts + b <= t
            cut = t - self.b
            while i < n and times[i] <= cut:
                i += 1
        else:
            leave = w.leave
            while i < n and leave(times[i]) <= t:
                i += 1
        if i:  # (an entry that leaves has counted: it entered before it left)
            if agg == "counter":
                total -= i
            elif agg == "counts":
                for x in range(i):
                    c = values[x]
                    m = total.get(c, 0) - 1
                    if m:
                        total[c] = m
                    else:
                        del total[c]
            elif inv is not None:
                for x in range(i):
                    total = inv.merge(total, inv.lift(values[x]), -1)
            del times[:i]
            if values is not None:
                del values[:i]
            k -= i
        better = self.better
        if better is not None and k > 1:
            k = self._staircase_columns(times, values, k, better)
        state[2], state[3] = total, k
        if not times:
            return self._nothing_counts(self._first(state), t)
        if k == 0:
            value = self._idle(self._first(state), t)
        elif inv is not None:
            value = inv.value(total)
        else:
            value = values[0]  # first, or the best of min / max, or the kept last
        due = times[0] + self.b if self.linear else w.leave(times[0])
        if k < len(times):
            due = min(due, times[k] + w.a)
        return value, due, state

    def _evaluate_grained(self, state: list[Any], t: int) -> tuple[Any, int, Any]:
        """`_evaluate_exact` on a grained window: entries carry how many events they are
        (`state[4]`), the ones that start counting fold into their grain's, and the
        entries of every grain that ended at least `b` ago leave."""
        times, values, counts = state[0], state[1], state[4]
        inv, g = self.inv, self.grain
        k = k0 = state[3]
        while k < len(times) and times[k] <= t:  # start counting (a = 0)
            if inv is not None:
                c = values[k] if values is not None else 1
                for _ in range(counts[k]):
                    state[2] = inv.merge(state[2], inv.lift(c))
            k += 1
        state[3] = k
        x = k0
        while x < state[3]:
            if not self._fold_back(state, x):
                x += 1
        cut = (t - self.b) // g * g  # an entry before it has left: its grain ended b ago
        i = bisect_left(times, cut)
        if inv is not None:
            for x in range(i):
                c = values[x] if values is not None else 1
                for _ in range(counts[x]):
                    state[2] = inv.merge(state[2], inv.lift(c), -1)
        if i:
            del times[:i], counts[:i]
            if values is not None:
                del values[:i]
            state[3] -= i
        k = state[3]
        better = self.better
        if better is not None and k > 1:
            state[3] = k = self._staircase_columns(times, values, k, better, counts)
        if not times:
            return self._nothing_counts(self._first(state), t)
        if k == 0:
            value = self._idle(self._first(state), t)
        elif inv is not None:
            value = inv.value(state[2])
        else:
            value = values[0]
        due = self.w.leave(times[0])
        if k < len(times):
            due = min(due, times[k])
        return value, due, state

    def _staircase_columns(
        self,
        times: list[int],
        values: list[Any],
        k: int,
        better: Callable[[Any, Any], bool],
        counts: list[int] | None = None,
    ) -> int:
        """`_staircase` on the column-wise exact state (and a grained one's counts)."""
        if self.type == "last":  # any newer entry wins: only the newest counting one stays
            del times[: k - 1]
            del values[: k - 1]
            if counts is not None:
                del counts[: k - 1]
            return 1
        keep: list[int] = []
        best: Any = None
        for i in range(k - 1, -1, -1):
            v = values[i]
            if best is None or not better(best, v):
                keep.append(i)
                best = v
        if len(keep) != k:
            keep.reverse()
            times[:k] = [times[i] for i in keep]
            values[:k] = [values[i] for i in keep]
            if counts is not None:
                counts[:k] = [counts[i] for i in keep]
        return len(keep)

    def _evaluate_bucketed(self, state: list[Any], t: int) -> tuple[Any, int, Any]:
        main, pending = state[0], state[1]
        while pending and pending[0][0] <= t:
            ts, c = pending.pop(0)
            self._bucket_add(state, ts, c)
        total = state[2]
        w, inv = self.w, self.inv
        i = 0
        while i < len(main) and w.bucket_leave(main[i][0]) <= t:
            if inv is not None:
                total = inv.merge(total, main[i][1], -1)
            i += 1
        if i:
            del main[:i]
        state[2] = total
        better = self.better
        if better is not None and len(main) > 1:
            self._staircase(main, len(main), 1, better)
        if not main and not pending:
            return self._nothing_counts(self._first(state), t)
        if not main:
            value = self._idle(self._first(state), t)
        elif inv is not None:
            value = inv.value(total)
        elif self.ends:
            value = main[0][1][2]
        else:
            value = main[0][1]
        due = w.bucket_leave(main[0][0]) if main else INF
        if pending and pending[0][0] < due:
            due = pending[0][0]
        return value, due, state

    def _evaluate_dynamic(
        self, state: list[Any], profile: ProfileRecord, t: int
    ) -> tuple[Any, int, Any]:
        entries = state[0]
        w = self.w
        timed = self.timed is not None
        if timed:  # counting is no contiguous run: an entry goes when its spans end
            if any(e[3][-1] <= t for e in entries):
                entries = state[0] = [e for e in entries if e[3][-1] > t]
            j = len(entries)
        else:
            leave = w.leave
            i = 0
            while i < len(entries) and leave(entries[i][0]) <= t:
                i += 1
            if i:
                del entries[:i]
            j = bisect_right(entries, t - w.a, key=_ts)
        if not entries:
            return self._nothing_counts(self._first(state), t)
        ok = self.dyn.ok if self.dyn is not None else None
        inv = self.inv
        total: Partial = inv.zero() if inv is not None else None
        best: list[Any] | None = None
        n = 0
        for k in range(j):
            e = entries[k]
            if (timed and not inside(e[3], t)) or (ok is not None and not ok(e[2], profile)):
                continue
            n += 1
            if inv is not None:
                total = inv.merge(total, inv.lift(e[1]))
            elif best is None or self._wins(e, best):
                best = e
        if not n:
            value = self._idle(self._first(state), t)
        else:
            value = inv.value(total) if inv is not None else best[1]  # type: ignore[index]
        due = INF
        if timed:
            for e in entries:
                due = min(due, next_bound(e[3], t))
        else:
            due = leave(entries[0][0])
            if j < len(entries):
                due = min(due, entries[j][0] + w.a)
        return value, due, state

    # -- session windows ---------------------------------------------------------------
    # State: `[sessions, pending]` (+ `first`). A session is `[start, last, times, values,
    # total]`: its first and last activity, the contributions of its events column-wise
    # in time order (all of them count: the session is the window) and their running
    # total for the invertible types; sessions are disjoint and in time order, the latest
    # last. `pending`: `[ts, contribution]` of events ahead of the clock. Activity is
    # every event the trait listens to (name and filters), with or without the property:
    # the property only decides what an event adds.

    def _ingest_session(
        self, state: Any, name: str, props: dict[str, Any], ts: int, message_id: str, now: int
    ) -> tuple[Any, bool]:
        if (self.filtered and not self.static(props)) or ts < self.since:
            return state, False
        if self.w.leave(ts) <= now:  # older than the lookback: it counted, at ts, only
            return self._mark(state, props, ts)
        c = self.contribution(props)
        if type(state) is str:
            state = decode_state(state)
        if type(state) is not list:
            state = self._current(state)
        if c is not None and self.marks and (state[-1] is None or ts < state[-1]):
            state[-1] = ts
        if ts > now:
            insort(state[1], [ts, c], key=self.order)
        else:
            self._session_add(state[0], ts, c)
            self._forget_sessions(state[0], now, keep_latest=True)
        return state, True

    def _session_add(self, sessions: list[Any], ts: int, c: Any) -> None:
        """Activity at `ts`, by event time: it joins the session it is less than `gap`
        from (merging two it bridges), or starts one of its own."""
        gap = self.gap
        j = len(sessions)
        while j and sessions[j - 1][0] - gap >= ts:  # (in time order: no step at all)
            j -= 1
        # sessions[:j] start less than `gap` after ts: only the last two can reach it
        joins = [k for k in (j - 2, j - 1) if k >= 0 and ts < sessions[k][1] + gap]
        if not joins:
            s = [ts, ts, [], [], self._zero()]
            sessions.insert(j, s)
        elif len(joins) == 2:  # a bridge: one session from the two
            a, b = sessions[joins[0]], sessions.pop(joins[1])
            a[1] = b[1]
            a[2] += b[2]  # disjoint in time: the later one's entries follow
            a[3] += b[3]
            if self.inv is not None:
                a[4] = self.inv.merge(a[4], b[4])
            s = a
        else:
            s = sessions[joins[0]]
            if ts < s[0]:
                s[0] = ts
            if ts > s[1]:
                s[1] = ts
        if c is None:
            return
        times, values = s[2], s[3]
        i = bisect_right(times, ts)
        if self.ends:  # one instant: ordered by the value too (never by arrival)
            vk = value_key(c)
            k = bisect_left(times, ts)
            while k < i and value_key(values[k]) <= vk:
                k += 1
            i = k
        times.insert(i, ts)
        values.insert(i, c)
        if self.inv is not None:
            s[4] = self.inv.merge(s[4], self.inv.lift(c))

    def _forget_sessions(self, sessions: list[Any], t: int, keep_latest: bool = False) -> None:
        """Drop the sessions that expired more than `retention` ago: no event the engine
        still accepts can extend them (with `allowed_lateness_ms`), or at least none that
        arrives less than `gap` after the session it belongs to expired. `keep_latest`: at
        ingest, whose clock may be far ahead of the event (a backfill reads history in time
        order at today's clock), the latest session may still be growing; only an
        evaluation at `t` may judge it."""
        keep = self.gap + self.retention
        if sessions and sessions[0][1] + keep <= t:
            latest = sessions[-1]
            sessions[:] = [s for s in sessions if s[1] + keep > t or (keep_latest and s is latest)]

    def _evaluate_session(self, state: Any, profile: ProfileRecord, t: int) -> tuple[Any, int, Any]:
        """The latest session's value while it is current (`t < last + gap`); due at its
        expiry, then when it is forgotten (`_forget_sessions`)."""
        if state is None:
            return None, INF, None
        if type(state) is str:
            state = decode_state(state)
        if type(state) is int:
            return self._nothing_counts(state, t)
        sessions, pending, gap, inv = state[0], state[1], self.gap, self.inv
        while pending and pending[0][0] <= t:
            ts, c = pending.pop(0)
            self._session_add(sessions, ts, c)
        self._forget_sessions(sessions, t)
        leave = self.w.leave
        for s in sessions:  # a session longer than the lookback loses its oldest events
            times, values = s[2], s[3]
            i = 0
            while i < len(times) and leave(times[i]) <= t:
                if inv is not None:
                    s[4] = inv.merge(s[4], inv.lift(values[i]), -1)
                i += 1
            if i:
                del times[:i], values[:i]
        first = self._first(state)
        if not sessions:
            if not pending:
                return self._nothing_counts(first, t)
            return self._idle(first, t), pending[0][0], state
        current = sessions[-1]
        last, times, values = current[1], current[2], current[3]
        better = self.better
        if better is not None and len(times) > 1:
            self._staircase_columns(times, values, len(times), better)
        if t >= last + gap:
            value = self._idle(first, t)
            due = last + gap + self.retention
        elif not times:
            value, due = self._idle(first, t), last + gap
        else:
            value = inv.value(current[4]) if inv is not None else values[0]
            due = min(last + gap, leave(times[0]))
        if pending and pending[0][0] < due:
            due = pending[0][0]
        return value, due, state

    def _wins(self, e: list[Any], best: list[Any]) -> bool:
        """Does entry e (newer or equal time than best, in scan order) replace best?"""
        t = self.type
        if t == "first":
            return bool((e[0], value_key(e[1])) < (best[0], value_key(best[1])))
        if t == "last":
            return bool((e[0], value_key(e[1])) >= (best[0], value_key(best[1])))
        if e[1] == best[1]:
            return type(e[1]) is int
        return bool(e[1] > best[1]) if t == "max" else bool(e[1] < best[1])
